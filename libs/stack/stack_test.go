package stack_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/nodexsec/nodex/libs/bus"
	"github.com/nodexsec/nodex/libs/errs"
	"github.com/nodexsec/nodex/libs/events"
	"github.com/nodexsec/nodex/libs/identity"
	"github.com/nodexsec/nodex/libs/stack"
)

func startStack(t *testing.T, dir string) *stack.Stack {
	t.Helper()
	s, err := stack.Start(context.Background(), stack.Config{
		Dir: dir, HeartbeatInterval: 200 * time.Millisecond,
	})
	if err != nil {
		t.Fatalf("starting stack: %v", err)
	}
	t.Cleanup(s.Close)

	return s
}

type ping struct {
	Text string `json:"text"`
}

// TestRequestReplyAcrossParties sends an agent's request to a service over
// the envelope and checks the authenticated sender the service sees.
func TestRequestReplyAcrossParties(t *testing.T) {
	ctx := context.Background()
	s := startStack(t, t.TempDir())

	svc, err := s.Open(ctx, "codesec", false)
	if err != nil {
		t.Fatalf("opening codesec: %v", err)
	}
	defer svc.Close(ctx)
	agent, err := s.Open(ctx, identity.DemoAgentID, false)
	if err != nil {
		t.Fatalf("opening agent: %v", err)
	}
	defer agent.Close(ctx)

	var sender string
	err = svc.Bus.Handle("nodex.v1.codesec.echo", "codesec", func(_ context.Context, r *bus.Request) (any, error) {
		sender = r.Sender
		var p ping
		if err := r.Decode(&p); err != nil {
			return nil, errs.InvalidRequest.Withf("decoding ping: %v", err)
		}
		if p.Text == "deny" {
			return nil, errs.AccessDenied
		}

		return ping{Text: "pong:" + p.Text}, nil
	})
	if err != nil {
		t.Fatal(err)
	}

	var got ping
	if err := agent.Bus.Request(ctx, "nodex.v1.codesec.echo", "service:codesec", ping{"hi"}, &got); err != nil {
		t.Fatalf("request: %v", err)
	}
	if got.Text != "pong:hi" {
		t.Errorf("reply %q, want pong:hi", got.Text)
	}
	if sender != identity.DemoAgentID {
		t.Errorf("service saw sender %q, want %q", sender, identity.DemoAgentID)
	}
	err = agent.Bus.Request(ctx, "nodex.v1.codesec.echo", "service:codesec", ping{"deny"}, &got)
	if !errors.Is(err, errs.AccessDenied) {
		t.Errorf("coded error reply = %v, want access_denied", err)
	}
}

// TestEventReachesAudience publishes an event from a service and reads it
// back as monitor, a member of the audit role.
func TestEventReachesAudience(t *testing.T) {
	ctx := context.Background()
	s := startStack(t, t.TempDir())

	kv, err := s.Open(ctx, "keyvault", false)
	if err != nil {
		t.Fatal(err)
	}
	defer kv.Close(ctx)
	mon, err := s.Open(ctx, "monitor", false)
	if err != nil {
		t.Fatal(err)
	}
	defer mon.Close(ctx)

	err = kv.Events.PublishSync(ctx, events.SecurityEvent{
		Type: "keyvault.retrieve", Status: events.StatusSuccess, Severity: events.SeverityInfo,
		Subject: identity.DemoAgentID, Resource: "key:openai-dev",
	})
	if err != nil {
		t.Fatalf("publishing event: %v", err)
	}

	got := make(chan events.SecurityEvent, 1)
	err = mon.Bus.Consume(ctx, bus.ConsumeConfig{
		Stream:   events.StreamName,
		Consumer: jetstream.ConsumerConfig{Durable: "monitor-stacktest"},
	}, func(_ context.Context, m *bus.Message) error {
		var ev events.SecurityEvent
		if err := m.Decode(&ev); err != nil {
			return err
		}
		if m.Sender != "keyvault" {
			t.Errorf("event sender %q, want keyvault", m.Sender)
		}
		got <- ev
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	select {
	case ev := <-got:
		if ev.Type != "keyvault.retrieve" || ev.Source != "keyvault" {
			t.Errorf("got event %s from %s, want keyvault.retrieve from keyvault", ev.Type, ev.Source)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("monitor did not receive the event within 10s")
	}
}

// TestRestartKeepsState starts a stack twice on one folder: the second start
// loads the same identities and keeps the stream.
func TestRestartKeepsState(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s1, err := stack.Start(ctx, stack.Config{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	p, err := s1.Open(ctx, "policy", false)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Events.PublishSync(ctx, events.SecurityEvent{
		Type: "policy.push", Status: events.StatusSuccess, Severity: events.SeverityInfo,
	}); err != nil {
		t.Fatal(err)
	}
	root := s1.Setup.Root.Public()
	_ = p.Close(ctx)
	s1.Close()

	s2 := startStack(t, dir)
	if !s2.Setup.Root.Public().Equal(root) {
		t.Error("restart created a new root key")
	}
	info, err := s2.Broker.JetStream().Stream(ctx, events.StreamName)
	if err != nil {
		t.Fatal(err)
	}
	if n := info.CachedInfo().State.Msgs; n != 1 {
		t.Errorf("events after restart = %d, want 1", n)
	}
	p2, err := s2.Open(ctx, "policy", false)
	if err != nil {
		t.Fatalf("reopening policy after restart: %v", err)
	}
	_ = p2.Close(ctx)
}
