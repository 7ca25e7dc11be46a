package regotest

import (
	"context"
	"errors"
	"testing"
	"time"
)

func TestRunReportsPassAndFail(t *testing.T) {
	modules := map[string]string{
		"a.rego":      "package a\n\nx := data.v\n",
		"a_test.rego": "package a_test\n\ntest_x if data.a.x == 1\n\ntest_y if data.a.x == 2\n",
	}

	rep, err := Run(context.Background(), modules, map[string]any{"v": 1}, time.Second)
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	if rep.Passed != 1 || rep.Failed != 1 {
		t.Errorf("got %d passed, %d failed; want 1 and 1", rep.Passed, rep.Failed)
	}
	if rep.OK() {
		t.Error("report with a failure is OK")
	}
	if rep.Results[1].Name != "data.a_test.test_y" || rep.Results[1].Pass {
		t.Errorf("got %+v, want data.a_test.test_y failing", rep.Results[1])
	}
}

func TestRunRejectsCompileErrors(t *testing.T) {
	tests := map[string]string{
		"syntax":      "package a\n\nx := ",
		"opa.runtime": "package a_test\n\ntest_env if count(opa.runtime().env) > 0\n",
		"http.send": "package a_test\n\ntest_net if http.send({\"method\": \"GET\", " +
			"\"url\": \"http://127.0.0.1:1\"})\n",
	}
	for name, src := range tests {
		_, err := Run(context.Background(), map[string]string{"a_test.rego": src}, nil, time.Second)
		if !errors.Is(err, ErrCompile) {
			t.Errorf("%s: got %v, want ErrCompile", name, err)
		}
	}
}
