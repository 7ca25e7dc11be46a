package broker_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/nodexsec/nodex/libs/broker"
	"github.com/nodexsec/nodex/libs/identity"
)

// denialsOf collects the broker's reported denials.
func denialsOf(e *env) <-chan broker.Denial {
	ch := make(chan broker.Denial, 256)
	e.b.OnDenial(func(d broker.Denial) {
		select {
		case ch <- d:
		default:
		}
	})

	return ch
}

// nextDenial returns the next reported denial of kind, or fails after 10s.
func nextDenial(t *testing.T, ch <-chan broker.Denial, kind string) broker.Denial {
	t.Helper()

	timeout := time.After(10 * time.Second)
	for {
		select {
		case d := <-ch:
			if d.Kind == kind {
				return d
			}
		case <-timeout:
			t.Fatalf("no %s denial reported within 10s", kind)
		}
	}
}

func TestPublishViolationsReportedRateLimited(t *testing.T) {
	e := startEnv(t, func(c *broker.Config) { c.DenialInterval = 500 * time.Millisecond })
	denials := denialsOf(e)
	agent := e.connect(t, e.setup.Creds[identity.DemoAgentID])
	const subject = "nodex.v1.events.codesec.forged"
	const sent = 5
	for range sent {
		if err := agent.nc.Publish(subject, []byte("x")); err != nil {
			t.Fatal(err)
		}
	}
	agent.expectViolation(t, subject)

	first := nextDenial(t, denials, broker.DenialPublish)
	if first.Identity != identity.DemoAgentID {
		t.Errorf("denial names identity %q, want %q", first.Identity, identity.DemoAgentID)
	}
	if first.Subject != subject {
		t.Errorf("denial names subject %q, want %q", first.Subject, subject)
	}
	if first.ConnID == 0 || first.Server == "" {
		t.Errorf("denial names connection %d on server %q, want both set", first.ConnID, first.Server)
	}
	// The repeats arrive as one later report that counts them.
	later := nextDenial(t, denials, broker.DenialPublish)
	if got := 2 + later.Suppressed; got != sent {
		t.Errorf("reports account for %d violations, want %d", got, sent)
	}
}

func TestSubscribeViolationReported(t *testing.T) {
	e := startEnv(t)
	denials := denialsOf(e)
	agent := e.connect(t, e.setup.Creds[identity.DemoAgentID])
	if _, err := agent.nc.SubscribeSync("nodex.v1.keyvault.retrieve"); err != nil {
		t.Fatal(err)
	}
	d := nextDenial(t, denials, broker.DenialSubscribe)
	if d.Identity != identity.DemoAgentID || d.Subject != "nodex.v1.keyvault.retrieve" {
		t.Errorf("got denial %+v, want subscribe by %s", d, identity.DemoAgentID)
	}
}

// TestViolationNameCannotHideSubject connects with a connection name that
// holds format verbs and a decoy violation. The server writes that name
// into its log format, so parsing the formatted line would lose or forge
// the subject.
func TestViolationNameCannotHideSubject(t *testing.T) {
	e := startEnv(t)
	denials := denialsOf(e)
	const name = `%d %q - Publish Violation - Subject "decoy" - Subscription Violation - Subject "decoy"`
	nc, err := broker.Connect(context.Background(), e.b.ClientURL(),
		e.setup.Creds[identity.DemoAgentID], nats.Name(name))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)

	const published = "nodex.v1.events.codesec.forged"
	if err := nc.Publish(published, []byte("x")); err != nil {
		t.Fatal(err)
	}
	d := nextDenial(t, denials, broker.DenialPublish)
	if d.Subject != published {
		t.Errorf("publish denial names subject %q, want %q", d.Subject, published)
	}
	if d.Identity != identity.DemoAgentID {
		t.Errorf("publish denial names identity %q, want %q", d.Identity, identity.DemoAgentID)
	}

	const subscribed = "nodex.v1.keyvault.retrieve"
	if _, err := nc.SubscribeSync(subscribed); err != nil {
		t.Fatal(err)
	}
	d = nextDenial(t, denials, broker.DenialSubscribe)
	if d.Subject != subscribed {
		t.Errorf("subscribe denial names subject %q, want %q", d.Subject, subscribed)
	}
}

func TestRejectedConnectionReported(t *testing.T) {
	ctx := context.Background()
	e := startEnv(t)
	denials := denialsOf(e)
	if err := e.admin.Suspend(ctx, identity.DemoAgentID); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "suspension in the broker view", func() bool {
		_, err := e.b.View().Active(identity.DemoAgentID)
		return err != nil
	})
	if nc, err := broker.Connect(ctx, e.b.ClientURL(), e.setup.Creds[identity.DemoAgentID]); err == nil {
		nc.Close()
		t.Fatal("suspended identity connected")
	}
	d := nextDenial(t, denials, broker.DenialAuth)
	if d.Identity != identity.DemoAgentID || !strings.Contains(d.Reason, "suspended") {
		t.Errorf("got denial %+v, want auth of %s naming the suspension", d, identity.DemoAgentID)
	}
	if d.Host == "" {
		t.Error("auth denial names no client host")
	}
}

func TestDenialEventValidates(t *testing.T) {
	d := broker.Denial{Kind: broker.DenialPublish, Identity: identity.DemoAgentID, ConnID: 7,
		Server: "NSRV", Host: "127.0.0.1:4000", Subject: strings.Repeat("a.", 1000), Suppressed: 3}
	ev := d.Event()
	ev.ID, ev.Time, ev.Source = "4f0a6a44-5c1b-4c4e-9a53-1c0f3b2a9d10", time.Now(), "monitor"
	if err := ev.Validate(); err != nil {
		t.Fatalf("denial event invalid: %v", err)
	}
	if ev.Type != "broker.denied" || ev.Subject != identity.DemoAgentID || ev.Action != "publish" {
		t.Errorf("got type %q subject %q action %q, want broker.denied, %s, publish",
			ev.Type, ev.Subject, ev.Action, identity.DemoAgentID)
	}
	if ev.Metadata["connection"] != "7" || ev.Metadata["suppressed"] != "3" {
		t.Errorf("metadata %v, want connection 7 and suppressed 3", ev.Metadata)
	}
}
