package e2e

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/nodexsec/nodex/libs/errs"
	"github.com/nodexsec/nodex/libs/identity"
	"github.com/nodexsec/nodex/services/incident/incident"
	"github.com/nodexsec/nodex/services/keyvault/api"
)

// TestRepeatedDenialsContainAgent follows one attack across every service:
// an agent without the key-reader role keeps asking keyvault for a key; policy
// denies each request and audits it; monitor raises UNAUTHORIZED_ACCESS;
// incident opens an incident and suspends the agent; the suspension holds.
func TestRepeatedDenialsContainAgent(t *testing.T) {
	ctx := context.Background()
	sys := startSystem(t)
	op := sys.openBuiltin(t, identity.OperatorID)

	var stored api.StoreReply
	err := op.Bus.Request(ctx, api.SubjectStore, api.Role, api.StoreRequest{
		Provider: "openai", Name: "openai-dev", Value: api.NewSecret([]byte(fakeOpenAIKey())),
	}, &stored)
	if err != nil {
		t.Fatalf("operator storing a key: %v", err)
	}

	agentCreds := sys.newAgent(t, op, "agent-greedy", identity.RoleAgent)
	agent := sys.openNew(t, agentCreds)
	for i := range 6 {
		var got api.RetrieveReply
		err := agent.Bus.Request(ctx, api.SubjectRetrieve, api.Role,
			api.RetrieveRequest{Name: "openai-dev"}, &got)
		if !errors.Is(err, errs.AccessDenied) {
			t.Fatalf("retrieve %d without key-reader role: err = %v, want access_denied", i, err)
		}
		if got.Value != "" {
			t.Fatalf("retrieve %d leaked a value to a denied agent", i)
		}
	}

	var inc incident.Summary
	eventually(t, "an UNAUTHORIZED_ACCESS incident for agent-greedy", 30*time.Second, func() bool {
		var list incident.ListReply
		if err := op.Bus.Request(ctx, incident.SubjectList, incident.Role,
			incident.ListRequest{}, &list); err != nil {
			t.Logf("listing incidents: %v", err)
			return false
		}
		for _, i := range list.Incidents {
			if i.Type == "UNAUTHORIZED_ACCESS" && i.Identity == "agent-greedy" {
				inc = i
				return true
			}
		}
		return false
	})

	eventually(t, "agent-greedy suspended in the registry", 30*time.Second, func() bool {
		id, err := op.View.Identity("agent-greedy")
		return err == nil && id.Status == identity.StatusSuspended
	})
	if inc.State == "open" {
		t.Logf("incident %s still open when the suspension landed", inc.ID)
	}

	// The suspension holds: the agent's connection is closed or its
	// messages are refused, and a new connection is refused.
	var got api.RetrieveReply
	rctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	if err := agent.Bus.Request(rctx, api.SubjectRetrieve, api.Role,
		api.RetrieveRequest{Name: "openai-dev"}, &got); err == nil {
		t.Error("suspended agent's request succeeded")
	}
}
