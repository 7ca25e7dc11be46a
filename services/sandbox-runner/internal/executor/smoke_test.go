package executor

import (
	"errors"
	"testing"

	"github.com/nodexsec/nodex/services/sandbox-runner/internal/proto"
)

func TestRunPythonPrints(t *testing.T) {
	e := newTestExecutor(t, 2)
	res := runSpec(t, e, Spec{Argv: []string{"/usr/bin/python3", "-c", "print('hi')"}})
	if string(res.Stdout) != "hi\n" {
		t.Fatalf("stdout = %q, want hi", res.Stdout)
	}
}

func TestRunReadsStdin(t *testing.T) {
	e := newTestExecutor(t, 1)
	res := runSpec(t, e, Spec{Argv: []string{"/usr/bin/python3", "-c",
		"import sys; print(sys.stdin.read().upper())"}, Stdin: []byte("hello")})
	if string(res.Stdout) != "HELLO\n" {
		t.Fatalf("stdout = %q (stderr %q), want HELLO", res.Stdout, res.Stderr)
	}
}

func TestInsecureRunIsMarked(t *testing.T) {
	e, err := New(Config{InitPath: "/nonexistent", Insecure: true, Logger: discardLogger()})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	res := runSpec(t, e, Spec{Runtime: RuntimePython, Entrypoint: "m.py",
		Files: []proto.File{{Path: "m.py", Data: []byte("print('plain')")}}})
	if !res.Insecure || string(res.Stdout) != "plain\n" {
		t.Errorf("got insecure %v stdout %q (stderr %q), want an insecure run printing plain",
			res.Insecure, res.Stdout, res.Stderr)
	}
}

func TestNewRejectsMissingInit(t *testing.T) {
	_, err := New(Config{InitPath: "/nonexistent/sandbox-init", Logger: discardLogger()})
	if !errors.Is(err, ErrNoSandbox) {
		t.Errorf("got %v, want ErrNoSandbox", err)
	}
}

// TestMissingProgramFailsSetup checks that an exec that fails ends the run
// as a setup failure naming the program, and that the next run works.
func TestMissingProgramFailsSetup(t *testing.T) {
	e := newTestExecutor(t, 1)
	res := runSpec(t, e, Spec{Argv: []string{"/usr/bin/does-not-exist"}})
	if res.Reason != ReasonSetupFailed {
		t.Errorf("got reason %s, want %s", res.Reason, ReasonSetupFailed)
	}
	const want = "starting /usr/bin/does-not-exist: no such file or directory"
	if res.Error != want {
		t.Errorf("got error %q, want %q", res.Error, want)
	}
	if res = runSpec(t, e, pythonSpec("print('ok')")); string(res.Stdout) != "ok\n" {
		t.Errorf("next run: got output %q (reason %s), want ok", res.Stdout, res.Reason)
	}
}
