package e2e

import (
	"errors"
	"testing"
	"time"

	"github.com/nodexsec/nodex/libs/errs"
	"github.com/nodexsec/nodex/libs/identity"
)

// TestKeyFloodRestrictsKeyAccess follows an API abuse. An agent allowed to
// read openai keys retrieves one as fast as it can, so keyvault rate-limits
// it and audits each limit hit. Monitor raises API_ABUSE, and incident
// restricts the agent's key access in policy data. The restriction holds:
// the agent, still active and still holding key-reader:openai, is denied.
func TestKeyFloodRestrictsKeyAccess(t *testing.T) {
	sys := startSystem(t)
	op := sys.openBuiltin(t, identity.OperatorID)
	storeKey(t, op, "openai-dev")
	agent := sys.openNew(t, sys.newAgent(t, op, "agent-flood", identity.RoleAgent,
		"key-reader:openai"))

	if got, err := retrieve(agent, "openai-dev"); err != nil || got.Value == "" {
		t.Fatalf("key reader's first retrieve: err = %v, want the value", err)
	}

	limited := 0
	for i := 0; i < 60 && limited < 3; i++ {
		_, err := retrieve(agent, "openai-dev")
		switch {
		case errors.Is(err, errs.RateLimited):
			limited++
		case err != nil:
			t.Fatalf("retrieve %d: err = %v, want a value or rate_limited", i, err)
		}
	}
	if limited == 0 {
		t.Fatal("60 back-to-back retrieves were never rate-limited")
	}

	inc := waitContained(t, op, "API_ABUSE", "agent-flood", 60*time.Second)
	if !hasAction(inc, "suspend_key_access", "agent-flood") {
		t.Errorf("incident %s did not suspend key access: %+v", inc.ID, inc.Actions)
	}
	if !hasAction(inc, "tighten_rate_limit", "agent-flood") {
		t.Errorf("incident %s did not tighten the rate limit: %+v", inc.ID, inc.Actions)
	}

	// Let the limiter's bucket refill, so a denial can only come from policy.
	time.Sleep(2 * time.Second)
	got, err := retrieve(agent, "openai-dev")
	if !errors.Is(err, errs.AccessDenied) {
		t.Fatalf("retrieve after containment: err = %v, want access_denied", err)
	}
	if got.Value != "" {
		t.Fatal("retrieve after containment returned the key value")
	}
	if id, err := op.View.Identity("agent-flood"); err != nil ||
		id.Status != identity.StatusActive {
		t.Errorf("agent-flood status = %v (err %v), want active: API abuse restricts keys only",
			id, err)
	}
}
