package authz

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
)

// testTimeout replaces the evaluation timeout in tests, because -race and a
// shared machine can slow one evaluation past the 250 ms default.
const testTimeout = 10 * time.Second

const allowOperatorPolicy = `package nodex.authz

decision := {"allow": true, "reasons": ["operator"]} if {
	"operator" in input.subject.roles
} else := {"allow": false, "reasons": ["not an operator"]}
`

func operatorInput() Input {
	return Input{
		Subject:  Subject{ID: "op-1", Kind: KindOperator, Roles: []string{"operator"}, Status: StatusActive},
		Action:   "list",
		Resource: Resource{Type: "key"},
		Context:  Context{Time: time.Date(2026, 1, 2, 10, 0, 0, 0, time.UTC)},
	}
}

func loadedEngine(t *testing.T, src string) *Engine {
	t.Helper()

	e := New(Options{Timeout: testTimeout})
	err := e.Load(context.Background(), PolicySet{
		Revision: "r1",
		Modules:  map[string]string{"authz.rego": src},
	})
	if err != nil {
		t.Fatalf("loading policy: %v", err)
	}

	return e
}

func TestDecideAllowsAndDenies(t *testing.T) {
	e := loadedEngine(t, allowOperatorPolicy)

	d, err := e.Decide(context.Background(), operatorInput())
	if err != nil {
		t.Fatalf("Decide: %v", err)
	}
	if !d.Allow {
		t.Errorf("got deny %v, want allow", d.Reasons)
	}
	if d.ID == "" {
		t.Error("decision has no id")
	}
	if d.Revision != "r1" {
		t.Errorf("got revision %q, want r1", d.Revision)
	}

	in := operatorInput()
	in.Subject.Roles = []string{"agent"}
	d, err = e.Decide(context.Background(), in)
	if err != nil {
		t.Fatalf("Decide: %v", err)
	}
	if d.Allow {
		t.Error("got allow, want deny for an agent")
	}
}

func TestDecideWithoutPolicyDenies(t *testing.T) {
	d, err := New(Options{Timeout: testTimeout}).Decide(context.Background(), operatorInput())
	if !errors.Is(err, ErrNoPolicy) {
		t.Fatalf("got error %v, want ErrNoPolicy", err)
	}
	if d.Allow || len(d.Reasons) == 0 || d.ID == "" {
		t.Errorf("got %+v, want a denial with a reason and an id", d)
	}
}

func TestDecideUndefinedResultDenies(t *testing.T) {
	e := loadedEngine(t, "package nodex.authz\n\ndecision := {\"allow\": true} if false\n")

	d, err := e.Decide(context.Background(), operatorInput())
	if !errors.Is(err, ErrUndefined) {
		t.Fatalf("got error %v, want ErrUndefined", err)
	}
	if d.Allow {
		t.Error("got allow, want deny")
	}
}

func TestDecideMalformedResultDenies(t *testing.T) {
	e := loadedEngine(t, "package nodex.authz\n\ndecision := {\"allow\": \"yes\"}\n")

	d, err := e.Decide(context.Background(), operatorInput())
	if !errors.Is(err, ErrMalformedResult) {
		t.Fatalf("got error %v, want ErrMalformedResult", err)
	}
	if d.Allow {
		t.Error("got allow, want deny")
	}
}

func TestDecideEvaluationErrorDenies(t *testing.T) {
	// Two values for one complete rule are a conflict error at evaluation.
	src := `package nodex.authz

decision := {"allow": true} if input.action == "list"
decision := {"allow": false} if input.resource.type == "key"
`
	e := loadedEngine(t, src)

	d, err := e.Decide(context.Background(), operatorInput())
	if !errors.Is(err, ErrEvaluation) {
		t.Fatalf("got error %v, want ErrEvaluation", err)
	}
	if d.Allow {
		t.Error("got allow, want deny")
	}
}

func TestDecideTimeoutDenies(t *testing.T) {
	// numbers.range over ten million elements takes far longer than 1 ms.
	src := `package nodex.authz

decision := {"allow": count([x | some x in numbers.range(1, 10000000)]) > 0}
`
	tests := []struct {
		name    string
		timeout time.Duration // the engine's bound
		ctx     time.Duration // the caller's deadline; 0 means none
	}{
		{"engine timeout", time.Millisecond, 0},
		{"caller deadline", testTimeout, time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := New(Options{Timeout: tt.timeout})
			if err := e.Load(context.Background(),
				PolicySet{Modules: map[string]string{"a.rego": src}}); err != nil {
				t.Fatalf("loading policy: %v", err)
			}
			ctx := context.Background()
			if tt.ctx > 0 {
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, tt.ctx)
				defer cancel()
			}

			d, err := e.Decide(ctx, operatorInput())
			if !errors.Is(err, ErrTimeout) {
				t.Fatalf("got error %v, want ErrTimeout", err)
			}
			if d.Allow {
				t.Error("got allow, want deny")
			}
			if len(d.Reasons) != 1 || !strings.Contains(d.Reasons[0], "timed out") {
				t.Errorf("got reasons %q, want one that says the evaluation timed out", d.Reasons)
			}
			if d.ID == "" {
				t.Error("got a decision without an id")
			}
		})
	}
}

func TestLoadRejectsBrokenSetAndKeepsOld(t *testing.T) {
	e := loadedEngine(t, allowOperatorPolicy)

	err := e.Load(context.Background(), PolicySet{
		Revision: "r2",
		Modules:  map[string]string{"authz.rego": "package nodex.authz\n\ndecision := {"},
	})
	if !errors.Is(err, ErrInvalidPolicySet) {
		t.Fatalf("got error %v, want ErrInvalidPolicySet", err)
	}

	err = e.Load(context.Background(), PolicySet{
		Revision: "r3",
		Modules:  map[string]string{"authz.rego": "package nodex.other\n\nx := 1\n"},
	})
	if err == nil || !strings.Contains(err.Error(), "does not define") {
		t.Fatalf("got error %v, want a missing-rule error", err)
	}

	d, err := e.Decide(context.Background(), operatorInput())
	if err != nil || !d.Allow || d.Revision != "r1" {
		t.Errorf("got %+v, %v; want allow by revision r1", d, err)
	}
}

func TestLoadRejectsExcludedBuiltins(t *testing.T) {
	sources := map[string]string{
		"http.send": `package nodex.authz

decision := {"allow": http.send({"method": "GET", "url": "http://127.0.0.1:1"}).status_code == 200}
`,
		"opa.runtime": `package nodex.authz

decision := {"allow": count(opa.runtime().env) > 0}
`,
		"net.lookup_ip_addr": `package nodex.authz

decision := {"allow": count(net.lookup_ip_addr("localhost")) > 0}
`,
	}
	for name, src := range sources {
		e := New(Options{Timeout: testTimeout})
		err := e.Load(context.Background(), PolicySet{Modules: map[string]string{"a.rego": src}})
		if !errors.Is(err, ErrInvalidPolicySet) {
			t.Errorf("%s: got %v, want ErrInvalidPolicySet", name, err)
		}
	}
}

func TestDecideDuringReloads(t *testing.T) {
	e := loadedEngine(t, allowOperatorPolicy)
	denyAll := "package nodex.authz\n\ndecision := {\"allow\": false, \"reasons\": [\"closed\"]}\n"

	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := range 50 {
			src := allowOperatorPolicy
			if i%2 == 1 {
				src = denyAll
			}
			set := PolicySet{Revision: fmt.Sprint(i), Modules: map[string]string{"a.rego": src}}
			if err := e.Load(context.Background(), set); err != nil {
				t.Errorf("loading revision %d: %v", i, err)
				return
			}
		}
	}()

	for {
		select {
		case <-done:
			return
		default:
		}
		d, err := e.Decide(context.Background(), operatorInput())
		if err != nil {
			t.Fatalf("Decide during reload: %v", err)
		}
		if d.Revision == "" || len(d.Reasons) == 0 {
			t.Fatalf("incomplete decision %+v", d)
		}
	}
}
