package policies

import (
	"context"
	"encoding/json"
	"os"
	"testing"

	"github.com/open-policy-agent/opa/v1/rego"

	"github.com/nodexsec/nodex/libs/authz"
	"github.com/nodexsec/nodex/services/policy/internal/casefile"
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
