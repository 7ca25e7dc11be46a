package authz

import (
	"context"
	"encoding/json"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nodexsec/nodex/libs/events"
)

// recordingSink stores published event bodies in place of the bus client,
// because these tests check the events and not their encryption.
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

func (s *recordingSink) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()

	return len(s.bodies)
}

func TestEventSinkRecordsEveryDecision(t *testing.T) {
	sink := &recordingSink{}
	pub := events.NewPublisher(sink, "policy", events.PublisherOptions{})
	e := New(Options{Audit: EventSink(pub), Timeout: testTimeout})
	if err := e.Load(context.Background(), PolicySet{
		Modules: map[string]string{"a.rego": allowOperatorPolicy},
	}); err != nil {
		t.Fatalf("loading policy: %v", err)
	}

	allowed, _ := e.Decide(context.Background(), operatorInput())
	in := operatorInput()
	in.Resource.ID = "../x"
	denied, _ := e.Decide(context.Background(), in)

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := pub.Close(ctx); err != nil {
		t.Fatalf("closing publisher: %v", err)
	}
	if sink.count() != 2 {
		t.Fatalf("got %d events, want 2", sink.count())
	}
	if pub.Lost() != 0 {
		t.Errorf("got %d lost events, want 0", pub.Lost())
	}

	ids := map[string]bool{}
	for _, b := range sink.bodies {
		var ev events.SecurityEvent
		if err := json.Unmarshal(b, &ev); err != nil {
			t.Fatalf("decoding event: %v", err)
		}
		ids[ev.Metadata["decision_id"]] = true
	}
	if !ids[allowed.ID] || !ids[denied.ID] {
		t.Errorf("events carry decision ids %v, want %s and %s", ids, allowed.ID, denied.ID)
	}
}

func TestDecisionEventFields(t *testing.T) {
	in := operatorInput()
	in.Resource.ID = "openai"
	d := Decision{ID: "d1", Allow: false, Reasons: []string{"a", "b"}, Revision: "policy@1"}

	ev := DecisionEvent(&in, &d)
	if ev.Type != EventType {
		t.Errorf("got type %q, want %q", ev.Type, EventType)
	}
	if ev.Status != events.StatusFailure {
		t.Errorf("got status %q, want failure", ev.Status)
	}
	if ev.Severity != events.SeverityMedium {
		t.Errorf("got severity %q, want medium", ev.Severity)
	}
	if ev.Resource != "key:openai" {
		t.Errorf("got resource %q, want key:openai", ev.Resource)
	}
	if ev.Subject != "op-1" {
		t.Errorf("got subject %q, want op-1", ev.Subject)
	}
	if ev.Metadata["reasons"] != "a; b" {
		t.Errorf("got reasons %q, want %q", ev.Metadata["reasons"], "a; b")
	}

	d.Reasons = []string{strings.Repeat("é", 2000)}
	ev = DecisionEvent(&in, &d)
	if len(ev.Metadata["reasons"]) > events.MaxFieldBytes {
		t.Errorf("reasons of %d bytes exceed the event limit", len(ev.Metadata["reasons"]))
	}
	if !strings.HasSuffix(ev.Metadata["reasons"], "é") {
		t.Error("truncation split a UTF-8 sequence")
	}
}
