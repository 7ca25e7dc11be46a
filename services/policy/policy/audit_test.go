package policy

import (
	"context"
	"encoding/json"
	"sync"
	"testing"
	"time"

	"github.com/nodexsec/nodex/libs/authz"
	"github.com/nodexsec/nodex/libs/events"
	"github.com/nodexsec/nodex/services/policy/internal/app"
)

// recordingSink stores published event bodies in place of the bus client,
// because this test checks the events and not their encryption.
type recordingSink struct {
	mu     sync.Mutex
	bodies [][]byte
}

func (s *recordingSink) Publish(_ context.Context, _, _ string, body any) error {
	b, err := json.Marshal(body)
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.bodies = append(s.bodies, b)

	return nil
}

func TestAuditSinkSeparatesRemoteDecisions(t *testing.T) {
	rec := &recordingSink{}
	pub := events.NewPublisher(rec, "policy", events.PublisherOptions{})
	sink := auditSink{pub: pub}

	in := authz.Input{
		Subject: authz.Subject{ID: "agent-1", Kind: authz.KindAgent, Roles: []string{"agent"},
			Status: authz.StatusActive},
		Action: "retrieve", Resource: authz.Resource{Type: "key", ID: "openai"},
		Context: authz.Context{Time: time.Now()},
	}
	d := authz.Decision{ID: "d-1", Reasons: []string{"no"}}
	sink.Record(context.Background(), &in, &d)
	sink.Record(app.WithRemoteCaller(context.Background(), "codesec"), &in, &d)

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := pub.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if len(rec.bodies) != 2 {
		t.Fatalf("got %d events, want 2", len(rec.bodies))
	}

	byType := map[string]events.SecurityEvent{}
	for _, b := range rec.bodies {
		var ev events.SecurityEvent
		if err := json.Unmarshal(b, &ev); err != nil {
			t.Fatal(err)
		}
		byType[ev.Type] = ev
	}

	local, ok := byType[authz.EventType]
	if !ok || local.Subject != "agent-1" {
		t.Errorf("authorization event %+v, want type %s about agent-1", local, authz.EventType)
	}
	remote, ok := byType[RemoteDecisionEventType]
	if !ok {
		t.Fatalf("no %s event among %v", RemoteDecisionEventType, byType)
	}
	if remote.Subject != "codesec" {
		t.Errorf("remote decision subject %q, want the caller codesec", remote.Subject)
	}
	if remote.Metadata["input_subject"] != "agent-1" {
		t.Errorf("input_subject %q, want agent-1", remote.Metadata["input_subject"])
	}
	if remote.Metadata["requested_by"] != "codesec" {
		t.Errorf("requested_by %q, want codesec", remote.Metadata["requested_by"])
	}
}
