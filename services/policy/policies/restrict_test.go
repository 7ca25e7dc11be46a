package policies

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/nodexsec/nodex/libs/authz"
	"github.com/nodexsec/nodex/services/policy/internal/app"
)

// TestMalformedExpiryKeepsRestriction loads role data whose key_access
// restriction has an unparseable expires_at, as a hand-edited bucket value
// could, and checks that the engine still denies the retrieve. The Rego test
// runner raises builtin errors, so this case is tested here instead.
func TestMalformedExpiryKeepsRestriction(t *testing.T) {
	modules, err := Modules()
	if err != nil {
		t.Fatal(err)
	}
	data, err := Data()
	if err != nil {
		t.Fatal(err)
	}
	rbac := data["nodex"].(map[string]any)["rbac"].(map[string]any)
	rbac["restrictions"] = map[string]any{"agent-7": map[string]any{"key_access": map[string]any{
		"reason": "api abuse", "incident_id": "inc-1", "set_by": "incident",
		"since": "2026-03-04T11:00:00Z", "expires_at": "next tuesday",
	}}}

	e := authz.New(authz.Options{Timeout: 10 * time.Second})
	set := authz.PolicySet{Revision: "malformed-expiry", Modules: modules, Data: data}
	if err := e.Load(context.Background(), set); err != nil {
		t.Fatalf("loading default policies: %v", err)
	}
	d, err := e.Decide(context.Background(), authz.Input{
		Subject: authz.Subject{ID: "agent-7", Kind: authz.KindAgent,
			Roles: []string{"key-reader:openai"}, Status: authz.StatusActive},
		Action:   "retrieve",
		Resource: authz.Resource{Type: "key", ID: "openai-dev"},
		Context: authz.Context{Time: time.Date(2026, 3, 4, 12, 0, 0, 0, time.UTC),
			Provider: "openai"},
	})
	if err != nil {
		t.Fatalf("deciding: %v", err)
	}
	if d.Allow {
		t.Fatalf("retrieve allowed under a restriction with a malformed expiry: %v", d.Reasons)
	}
	want := `key access of "agent-7" is restricted by incident "inc-1": api abuse`
	if !slices.Contains(d.Reasons, want) {
		t.Errorf("reasons = %q, want %q", d.Reasons, want)
	}
}

func TestRestrictSchemasMatchBodies(t *testing.T) {
	expires := time.Date(2026, 3, 4, 13, 0, 0, 0, time.UTC)
	rbac := authz.RBAC{Roles: map[string]authz.Role{}, Bindings: map[string][]string{},
		Restrictions: map[string]map[string]authz.Restriction{"agent-7": {
			authz.RestrictKeyAccess: {Reason: "api abuse", IncidentID: "inc-1", SetBy: "incident",
				Since: expires.Add(-time.Hour), ExpiresAt: expires},
			authz.RestrictRateLimit: {Reason: "api abuse", SetBy: "incident",
				Since: expires.Add(-time.Hour), RequestsPerMinute: 6},
		}}}
	if err := rbac.Validate(); err != nil {
		t.Fatalf("role data with restrictions invalid: %v", err)
	}

	bodies := []struct {
		schema string
		body   any
	}{
		{"rbac.schema.json", rbac},
		{"restrict-request.schema.json", app.RestrictRequest{Identity: "agent-7",
			Restriction: authz.RestrictRateLimit, RequestsPerMinute: 6, Reason: "api abuse",
			IncidentID: "inc-1", ExpiresAt: expires}},
		{"restrict-request.schema.json", app.RestrictRequest{Identity: "agent-7",
			Restriction: authz.RestrictKeyAccess, Lift: true}},
		{"restrict-reply.schema.json", app.RestrictReply{Identity: "agent-7",
			Restriction: authz.RestrictKeyAccess, Active: true, Changed: true, Revision: 9}},
	}
	for _, b := range bodies {
		if ok, problems := matchSchema(t, b.schema, b.body); !ok {
			t.Errorf("%s: %T does not match: %v", b.schema, b.body, problems)
		}
	}
}
