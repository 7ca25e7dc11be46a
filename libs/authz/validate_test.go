package authz

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

func TestDecideRejectsInvalidInput(t *testing.T) {
	e := loadedEngine(t, allowOperatorPolicy)

	tests := []struct {
		name   string
		mutate func(in *Input)
		reason string
	}{
		{"dot dot in id", func(in *Input) { in.Resource.ID = "a..b" }, `contains ".."`},
		{"slash in id", func(in *Input) { in.Resource.ID = "keys/openai" }, "may contain only"},
		{"star in id", func(in *Input) { in.Resource.ID = "*" }, "may contain only"},
		{"nul in id", func(in *Input) { in.Resource.ID = "ab\x00c" }, "may contain only"},
		{"nul in role", func(in *Input) { in.Subject.Roles = []string{"operator\x00"} },
			"control character"},
		{"empty subject id", func(in *Input) { in.Subject.ID = "" }, "subject.id is empty"},
		{"slash in subject id", func(in *Input) { in.Subject.ID = "../op" }, `contains ".."`},
		{"empty action", func(in *Input) { in.Action = "" }, "action is empty"},
		{"upper-case action", func(in *Input) { in.Action = "List" }, "may contain only"},
		{"empty resource type", func(in *Input) { in.Resource.Type = "" },
			"resource.type is empty"},
		{"too many roles", func(in *Input) { in.Subject.Roles = make([]string, 65) },
			"at most 64"},
		{"long id", func(in *Input) { in.Resource.ID = strings.Repeat("a", 257) },
			"at most 256"},
		{"oversized input", func(in *Input) {
			in.Context.Attributes = map[string]string{}
			for i := range 32 {
				in.Context.Attributes[string(rune('a'+i%26))+strings.Repeat("x", i)] =
					strings.Repeat("v", 1000)
			}
			in.Subject.Attributes = map[string]string{}
			for i := range 32 {
				in.Subject.Attributes[string(rune('a'+i%26))+strings.Repeat("y", i)] =
					strings.Repeat("v", 1000)
			}
			in.Resource.Labels = map[string]string{"big": strings.Repeat("v", 1000)}
		}, "exceeds the limit"},
		{"bad severity", func(in *Input) {
			in.Context.Findings = []Finding{{RuleID: "r", Severity: "CRITICAL"}}
		}, "severity"},
		{"too many findings", func(in *Input) {
			in.Context.Findings = make([]Finding, 1001)
		}, "at most 1000"},
		{"bad label key", func(in *Input) {
			in.Resource.Labels = map[string]string{"Env": "prod"}
		}, "may contain only"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := operatorInput()
			tt.mutate(&in)

			d, err := e.Decide(context.Background(), in)
			if !errors.Is(err, ErrInvalidInput) {
				t.Fatalf("got error %v, want ErrInvalidInput", err)
			}
			if d.Allow {
				t.Error("got allow, want deny")
			}
			if len(d.Reasons) != 1 || !strings.Contains(d.Reasons[0], tt.reason) {
				t.Errorf("got reasons %q, want one containing %q", d.Reasons, tt.reason)
			}
			if d.ID == "" {
				t.Error("decision has no id")
			}
		})
	}
}

func TestDecideAcceptsValidIDs(t *testing.T) {
	e := loadedEngine(t, allowOperatorPolicy)

	for _, id := range []string{"openai", "b-0192.v1", "agent@team", "key-reader:x", "A_b"} {
		in := operatorInput()
		in.Resource.ID = id

		d, err := e.Decide(context.Background(), in)
		if err != nil {
			t.Errorf("id %q: got error %v, want none", id, err)
		}
		if !d.Allow {
			t.Errorf("id %q: got deny %q, want allow", id, d.Reasons)
		}
	}
}

func FuzzDecideNeverAllowsInvalid(f *testing.F) {
	f.Add("openai", "operator", "list")
	f.Add("a/../b", "operator", "list")
	f.Add("x\x00", "Operator", "LIST")
	f.Fuzz(func(t *testing.T, id, role, action string) {
		e := loadedEngine(t, allowOperatorPolicy)
		in := operatorInput()
		in.Resource.ID = id
		in.Subject.Roles = []string{role}
		in.Action = action

		d, err := e.Decide(context.Background(), in)
		if err != nil && d.Allow {
			t.Fatalf("allowed despite error %v", err)
		}
		if d.Allow && (strings.Contains(id, "..") || strings.ContainsAny(id, "/*\x00")) {
			t.Fatalf("allowed resource id %q", id)
		}
	})
}

// FuzzDecideJSON feeds policy.decide-style JSON bodies to Decide: whatever
// the body, an error must deny and an allowed input must have passed the
// resource id rules.
func FuzzDecideJSON(f *testing.F) {
	f.Add([]byte(`{"subject":{"id":"op-1","kind":"operator","roles":["operator"],` +
		`"status":"active"},"action":"list","resource":{"type":"key"}}`))
	f.Add([]byte(`{"subject":{"id":"op-1","roles":["operator"],"status":"active"},` +
		`"action":"get","resource":{"type":"key","id":"a/../b"}}`))
	f.Add([]byte(`{"subject":{"id":"x\u0000"},"context":{"findings":[{"severity":"x"}]}}`))

	e := New(Options{Timeout: testTimeout})
	if err := e.Load(context.Background(), PolicySet{
		Modules: map[string]string{"a.rego": allowOperatorPolicy},
	}); err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		var in Input
		if json.Unmarshal(body, &in) != nil {
			return
		}

		d, err := e.Decide(context.Background(), in)
		if err != nil && d.Allow {
			t.Fatalf("allowed despite error %v", err)
		}
		id := in.Resource.ID
		if d.Allow && (strings.Contains(id, "..") || strings.ContainsAny(id, "/*\x00")) {
			t.Fatalf("allowed resource id %q", id)
		}
	})
}
