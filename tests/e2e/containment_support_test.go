package e2e

import (
	"context"
	"testing"
	"time"

	"github.com/nodexsec/nodex/libs/identity"
	"github.com/nodexsec/nodex/libs/party"
	"github.com/nodexsec/nodex/services/incident/incident"
	"github.com/nodexsec/nodex/services/keyvault/api"
)

// openNew connects as a freshly created identity. The broker and every
// service learn of a new identity through their own watches of the registry,
// a moment after the write. The broker may refuse the first connections, and
// a service rejects an envelope from a sender its view does not list yet
// (unknown_sender), so the request gets no reply.
func (s *system) openNew(t *testing.T, creds *identity.Credentials) *party.Party {
	t.Helper()
	ctx := context.Background()
	deadline := time.Now().Add(15 * time.Second)
	for {
		p, err := party.Open(ctx, party.Config{URL: s.url, Creds: creds, Log: testLog(t)})
		if err == nil {
			t.Cleanup(func() { _ = p.Close(context.Background()) })
			// NOTE: no service exposes the revision its registry view has
			// reached, so the test waits a fixed, generous time instead.
			time.Sleep(time.Second)
			return p
		}
		if time.Now().After(deadline) {
			t.Fatalf("opening party %s: %v", creds.ID, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// storeKey stores a made-up OpenAI key under name as the operator.
func storeKey(t *testing.T, op *party.Party, name string) api.StoreReply {
	t.Helper()
	var stored api.StoreReply
	err := op.Bus.Request(context.Background(), api.SubjectStore, api.Role, api.StoreRequest{
		Provider: "openai", Name: name, Value: api.NewSecret([]byte(fakeOpenAIKey())),
	}, &stored)
	if err != nil {
		t.Fatalf("operator storing key %s: %v", name, err)
	}

	return stored
}

// retrieve requests the latest version of key name from keyvault as p.
func retrieve(p *party.Party, name string) (api.RetrieveReply, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var got api.RetrieveReply
	err := p.Bus.Request(ctx, api.SubjectRetrieve, api.Role, api.RetrieveRequest{Name: name}, &got)

	return got, err
}

// waitContained waits for an incident of type typ about identity id whose
// every containment action ran, and returns it. On timeout it logs the
// incident's actions and follow-ups, which name the failed containment.
func waitContained(t *testing.T, op *party.Party, typ, id string,
	deadline time.Duration) *incident.Incident {
	t.Helper()
	ctx := context.Background()
	var last *incident.Incident
	end := time.Now().Add(deadline)
	for time.Now().Before(end) {
		var list incident.ListReply
		if err := op.Bus.Request(ctx, incident.SubjectList, incident.Role,
			incident.ListRequest{}, &list); err != nil {
			t.Logf("listing incidents: %v", err)
		}
		for _, s := range list.Incidents {
			if string(s.Type) != typ || s.Identity != id {
				continue
			}
			var got incident.GetReply
			if err := op.Bus.Request(ctx, incident.SubjectGet, incident.Role,
				incident.GetRequest{ID: s.ID}, &got); err != nil {
				t.Logf("getting incident %s: %v", s.ID, err)
				continue
			}
			last = got.Incident
			if last.Contained() && len(last.Actions) > 0 {
				return last
			}
		}
		time.Sleep(200 * time.Millisecond)
	}
	if last == nil {
		t.Fatalf("no %s incident about %s after %s", typ, id, deadline)
	}
	for _, a := range last.Actions {
		t.Logf("incident %s action %s %s %s: status %s, result %q, error %q", last.ID, a.ID,
			a.Kind, a.Target, a.Status, a.Result, a.Error)
	}
	for _, f := range last.FollowUps {
		t.Logf("incident %s follow-up: %+v", last.ID, f)
	}
	t.Fatalf("%s incident %s about %s not contained after %s (state %s)", typ, last.ID, id,
		deadline, last.State)

	return nil
}

// hasAction reports whether inc ran an action of kind on target.
func hasAction(inc *incident.Incident, kind, target string) bool {
	for _, a := range inc.Actions {
		if string(a.Kind) == kind && a.Target == target && string(a.Status) == "done" {
			return true
		}
	}

	return false
}
