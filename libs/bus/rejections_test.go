package bus

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/nodexsec/nodex/libs/envelope"
	"github.com/nodexsec/nodex/libs/events"
	"github.com/nodexsec/nodex/libs/testkit"
)

func TestRejectionEvent(t *testing.T) {
	ev := RejectionEvent(envelope.Rejection{Reason: envelope.ErrBadSignature,
		Err: envelope.ErrBadSignature, Subject: "nodex.v1.codesec.submit", Time: time.Now(),
		Suppressed: 3})
	if ev.Subject != "" {
		t.Errorf("event attributes the rejection to %q", ev.Subject)
	}
	if ev.Metadata["reason"] != "bad_signature" {
		t.Errorf("reason = %q, want bad_signature", ev.Metadata["reason"])
	}
	if ev.Metadata["suppressed"] != "3" {
		t.Errorf("suppressed = %q, want 3", ev.Metadata["suppressed"])
	}
	if ev.Severity != events.SeverityMedium {
		t.Errorf("severity = %q, want medium", ev.Severity)
	}
	ev.Source, ev.ID = "codesec-1", "6f1c2a9e-8d1b-4c3e-9f00-1a2b3c4d5e6f"
	if err := ev.Validate(); err != nil {
		t.Errorf("event does not validate: %v", err)
	}
}

// TestRejectionEventsPublished sends a forged request to a service whose
// codec reports rejections through the events publisher, and reads the
// event back from the stream.
func TestRejectionEventsPublished(t *testing.T) {
	srv := testkit.NATSServer(t)
	w := newWorld(t, srv)
	ctx := context.Background()
	w.AddParty(t, "monitor-1", "service", "service:monitor", events.AudienceRole)
	svcParty := w.AddParty(t, "codesec-1", "service", "service:codesec")
	var rejections RejectionEvents
	nc := testkit.Connect(t, srv)
	svc, err := New(Config{Conn: nc, Codec: svcParty.Codec(t, func(c *envelope.Config) {
		c.OnReject = rejections.Hook
	})})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := events.EnsureStream(ctx, svc.JetStream(), events.StreamOptions{}); err != nil {
		t.Fatal(err)
	}
	pub := events.NewPublisher(svc, svc.ID(), events.PublisherOptions{})
	defer pub.Close(ctx)
	rejections.SetPublisher(pub)
	if err := svc.Handle("nodex.v1.codesec.submit", "codesec", func(context.Context,
		*Request) (any, error) {
		return nil, nil
	}); err != nil {
		t.Fatal(err)
	}
	_ = nc.Flush()

	raw := testkit.Connect(t, srv)
	if err := raw.PublishRequest("nodex.v1.codesec.submit", "_INBOX.x", []byte("not an envelope")); err != nil {
		t.Fatal(err)
	}
	cons, err := svc.JetStream().CreateConsumer(ctx, "NODEX_EVENTS", jetstream.ConsumerConfig{
		FilterSubject: "nodex.v1.events.>"})
	if err != nil {
		t.Fatal(err)
	}
	msg, err := cons.Next(jetstream.FetchMaxWait(5 * time.Second))
	if err != nil {
		t.Fatalf("no rejection event within 5s: %v", err)
	}
	if msg.Subject() != "nodex.v1.events.codesec_1.envelope.rejected" {
		t.Errorf("event subject = %q, want nodex.v1.events.codesec_1.envelope.rejected",
			msg.Subject())
	}
}
