package executor

import "testing"

func TestRunPythonPrints(t *testing.T) {
	e := newTestExecutor(t, 2)
	res := runSpec(t, e, Spec{Argv: []string{"/usr/bin/python3", "-c", "print('hi')"}})
	t.Logf("%+v stdout=%q stderr=%q", res, res.Stdout, res.Stderr)
	if string(res.Stdout) != "hi\n" {
		t.Fatalf("stdout = %q, want hi", res.Stdout)
	}
}
