package policies

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"os"
	"testing"
	"time"

	"github.com/open-policy-agent/opa/v1/rego"

	"github.com/nodexsec/nodex/libs/authz"
	"github.com/nodexsec/nodex/libs/envelope"
	"github.com/nodexsec/nodex/services/policy/internal/app"
	"github.com/nodexsec/nodex/services/policy/internal/casefile"
	"github.com/nodexsec/nodex/services/policy/internal/regotest"
)

// matchSchema validates doc against a schema file in schemas/policy with
// OPA's json.match_schema built-in.
func matchSchema(t *testing.T, schemaFile string, doc any) (bool, []any) {
	t.Helper()

	raw, err := os.ReadFile("../../../schemas/policy/" + schemaFile)
	if err != nil {
		t.Fatalf("reading schema: %v", err)
	}
	var schema any
	if err := json.Unmarshal(raw, &schema); err != nil {
		t.Fatalf("decoding schema %s: %v", schemaFile, err)
	}
	b, err := json.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	var value any
	if err := json.Unmarshal(b, &value); err != nil {
		t.Fatal(err)
	}

	rs, err := rego.New(
		rego.Query("x := json.match_schema(input.doc, input.schema)"),
		rego.StrictBuiltinErrors(true),
		rego.Input(map[string]any{"doc": value, "schema": schema}),
	).Eval(context.Background())
	if err != nil {
		t.Fatalf("matching %s: %v", schemaFile, err)
	}
	if len(rs) != 1 {
		t.Fatalf("matching %s: %d results", schemaFile, len(rs))
	}

	pair, _ := rs[0].Bindings["x"].([]any)
	if len(pair) != 2 {
		t.Fatalf("matching %s: result %v", schemaFile, rs[0].Bindings["x"])
	}
	ok, _ := pair[0].(bool)
	problems, _ := pair[1].([]any)

	return ok, problems
}

func TestSchemasMatchDecisionCases(t *testing.T) {
	cases, err := casefile.Load("testdata/cases")
	if err != nil {
		t.Fatal(err)
	}

	for _, c := range cases {
		ok, problems := matchSchema(t, "decision-input.schema.json", c.Input)
		// Inputs the engine rejects before evaluation break the schema too,
		// except the oversized one, whose limit is on the sum of lengths.
		wantOK := c.Want.Error == "" || c.Name == "oversized_input_denied"
		if ok != wantOK {
			t.Errorf("%s: input matches schema = %v, want %v: %v", c.Name, ok, wantOK, problems)
		}
	}

	d := authz.Decision{ID: "0192f3a4-0000-7000-8000-000000000000", Allow: true,
		Reasons: []string{"r"}, Flags: []string{"findings_high"}, Revision: "policy@1/rbac@2"}
	if ok, problems := matchSchema(t, "decision.schema.json", d); !ok {
		t.Errorf("decision does not match its schema: %v", problems)
	}

	rbac, err := RBAC()
	if err != nil {
		t.Fatal(err)
	}
	if ok, problems := matchSchema(t, "rbac.schema.json", rbac); !ok {
		t.Errorf("default roles do not match the rbac schema: %v", problems)
	}
}

func TestSchemasMatchBodies(t *testing.T) {
	role := authz.Role{Description: "d", Kinds: []string{authz.KindAgent}, Permissions: []authz.Permission{{
		Resource: "incident", Actions: []string{"contain"}, Providers: []string{"openai"},
		Window: &authz.Window{StartHour: 0, EndHour: 24, Days: []string{"Monday"}},
	}}}
	report := &regotest.Report{Passed: 1, Results: []regotest.Result{
		{Name: "data.a_test.test_x", Pass: true, Location: "a_test.rego:3", DurationNS: 10},
	}}
	signed, err := authz.Sign(envelope.NewStaticKeys("policy", 1, ed25519.NewKeyFromSeed(
		make([]byte, ed25519.SeedSize))), authz.KeyRBAC, []byte(`{"roles":{}}`), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	var signedDoc any
	if err := json.Unmarshal(signed, &signedDoc); err != nil {
		t.Fatal(err)
	}

	bodies := []struct {
		schema string
		body   any
	}{
		{"role-add-request.schema.json", app.RoleAddRequest{Name: "night-ops", Role: role}},
		{"role-add-reply.schema.json", app.RoleAddReply{Name: "night-ops", Created: true, Revision: 3}},
		{"role-bind-request.schema.json", app.RoleBindRequest{Identity: "agent-1",
			Role: "key-reader:openai", Unbind: true}},
		{"role-bind-reply.schema.json", app.RoleBindReply{Identity: "agent-1", Roles: []string{},
			Revision: 4}},
		{"push-request.schema.json", app.PushRequest{Modules: map[string]string{"a.rego": "package a"},
			Data: map[string]any{"x": 1}}},
		{"push-reply.schema.json", app.PushReply{Revision: 5, Active: "policy@5/rbac@4", Tests: report}},
		{"test-reply.schema.json", app.TestReply{OK: true, Tests: report}},
		{"test-reply.schema.json", app.TestReply{CompileError: "a.rego:1: parse error"}},
		{"policy-set.schema.json", authz.PolicySet{Revision: "r", Modules: map[string]string{
			"a.rego": "package a"}}},
		{"signed-value.schema.json", signedDoc},
	}
	for _, b := range bodies {
		if ok, problems := matchSchema(t, b.schema, b.body); !ok {
			t.Errorf("%s: %T does not match: %v", b.schema, b.body, problems)
		}
	}
}
