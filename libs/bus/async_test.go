package bus

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/nodexsec/nodex/libs/testkit"
)

func TestPublishAsyncStoresOnce(t *testing.T) {
	srv := testkit.NATSServer(t)
	w := newWorld(t, srv)
	ctx := context.Background()
	pub := newClient(t, srv, w.AddParty(t, "keyvault-1", "service", "service:keyvault"), nil)
	mon := newClient(t, srv, w.AddParty(t, "monitor-1", "service", "service:monitor"), nil)
	stream, err := EnsureStream(ctx, pub.JetStream(), jetstream.StreamConfig{
		Name: "NODEX_EVENTS", Subjects: []string{"nodex.v1.events.>"}, Duplicates: time.Minute,
	})
	if err != nil {
		t.Fatalf("ensuring stream: %v", err)
	}

	fut, err := pub.PublishAsync(ctx, "nodex.v1.events.keyvault.key_stored", "service:monitor",
		echo{Text: "stored"})
	if err != nil {
		t.Fatalf("publishing: %v", err)
	}
	first := awaitAck(t, fut)
	// A resend of the same message, as after a lost acknowledgement, must
	// not store a second copy.
	again, err := pub.RepublishAsync(fut.Msg())
	if err != nil {
		t.Fatalf("republishing: %v", err)
	}
	second := awaitAck(t, again)
	if !second.Duplicate || second.Sequence != first.Sequence {
		t.Errorf("resend ack = %+v, want a duplicate of sequence %d", second, first.Sequence)
	}
	info, err := stream.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.State.Msgs != 1 {
		t.Errorf("stream holds %d messages, want 1", info.State.Msgs)
	}

	got := make(chan *Message, 2)
	err = mon.Consume(ctx, ConsumeConfig{Stream: "NODEX_EVENTS",
		Consumer: jetstream.ConsumerConfig{Durable: "monitor-events"}},
		func(_ context.Context, m *Message) error {
			got <- m
			return nil
		})
	if err != nil {
		t.Fatalf("consuming: %v", err)
	}
	select {
	case m := <-got:
		var e echo
		if err := m.Decode(&e); err != nil {
			t.Fatalf("decoding: %v", err)
		}
		if e.Text != "stored" || m.Sender != "keyvault-1" {
			t.Errorf("got %+v from %s, want stored from keyvault-1", e, m.Sender)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no event consumed within 5s")
	}
}

func TestRepublishAsyncNeedsSentMessage(t *testing.T) {
	srv := testkit.NATSServer(t)
	w := newWorld(t, srv)
	pub := newClient(t, srv, w.AddParty(t, "keyvault-1", "service", "service:keyvault"), nil)
	if _, err := pub.RepublishAsync(nil); err == nil {
		t.Error("RepublishAsync(nil) succeeded, want an error")
	}
}

func awaitAck(t *testing.T, fut jetstream.PubAckFuture) *jetstream.PubAck {
	t.Helper()
	select {
	case ack := <-fut.Ok():
		return ack
	case err := <-fut.Err():
		t.Fatalf("publish failed: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("no acknowledgement within 10s")
	}

	return nil
}
