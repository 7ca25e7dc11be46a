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
