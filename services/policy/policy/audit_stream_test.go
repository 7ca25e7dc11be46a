package policy_test

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/nodexsec/nodex/libs/bus"
	"github.com/nodexsec/nodex/libs/events"
	"github.com/nodexsec/nodex/services/policy/policy"
)

// TestRemoteDecisionEventLandsInStream checks that the audit event of a
// remote decision, published after the reply, is stored in NODEX_EVENTS
// with the decision id, names the caller as its subject and opens for a
// holder of the events role.
func TestRemoteDecisionEventLandsInStream(t *testing.T) {
	w := start(t)
	ctx := context.Background()

	in := retrieveOpenAI()
	d, err := w.decide(t, w.codesec, in)
	if err != nil {
		t.Fatalf("remote decide: %v", err)
	}

	subject, err := events.Subject("policy", policy.RemoteDecisionEventType)
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan events.SecurityEvent, 16)
	err = w.audit.Consume(ctx, bus.ConsumeConfig{Stream: events.StreamName,
		Consumer: jetstream.ConsumerConfig{Durable: "monitor-remote-decisions",
			FilterSubject: subject}},
		func(_ context.Context, m *bus.Message) error {
			var ev events.SecurityEvent
			if err := m.Decode(&ev); err != nil {
				return err
			}
			got <- ev
			return nil
		})
	if err != nil {
		t.Fatalf("consuming %s: %v", events.StreamName, err)
	}

	deadline := time.After(10 * time.Second)
	for {
		select {
		case ev := <-got:
			if ev.Metadata["decision_id"] != d.ID {
				continue // another decision, such as the caller's authorization
			}
			if ev.Subject != "codesec" || ev.Metadata["input_subject"] != in.Subject.ID {
				t.Errorf("event subject %q, input_subject %q; want codesec, %s",
					ev.Subject, ev.Metadata["input_subject"], in.Subject.ID)
			}
			if ev.Source != "policy" {
				t.Errorf("event source %q, want policy", ev.Source)
			}
			if lost := w.pub.Lost(); lost != 0 {
				t.Errorf("lost %d decision events, want 0", lost)
			}
			return
		case <-deadline:
			t.Fatalf("no %s event with decision id %s in %s within 10s",
				policy.RemoteDecisionEventType, d.ID, events.StreamName)
		}
	}
}
