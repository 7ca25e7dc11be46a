package executor

import "testing"

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
