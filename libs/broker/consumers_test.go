package broker_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nodexsec/nodex/libs/broker"
	"github.com/nodexsec/nodex/libs/identity"
)

func TestPushConsumerOutsideInboxDeleted(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	e := startEnv(t)
	denials := denialsOf(e)
	agent := e.connect(t, e.setup.Creds[identity.DemoAgentID])
	stream := "KV_" + identity.Bucket
	create := func(name, deliver string) {
		t.Helper()
		body := fmt.Sprintf(`{"stream_name":%q,"config":{"name":%q,"deliver_subject":%q,`+
			`"ack_policy":"none","deliver_policy":"all"}}`, stream, name, deliver)
		reply, err := agent.nc.RequestWithContext(ctx,
			"$JS.API.CONSUMER.CREATE."+stream+"."+name, []byte(body))
		if err != nil {
			t.Fatalf("creating consumer %s: %v", name, err)
		}
		if strings.Contains(string(reply.Data), `"error"`) {
			t.Fatalf("creating consumer %s: %s", name, reply.Data)
		}
	}
	own := broker.InboxPrefix(identity.DemoAgentID) + ".watch"
	create("own-inbox", own)
	create("flood", "nodex.v1.codesec.submit")

	d := nextDenial(t, denials, broker.DenialConsumer)
	if d.Identity != identity.DemoAgentID || d.Subject != "nodex.v1.codesec.submit" {
		t.Errorf("got denial %+v, want consumer by %s delivering to nodex.v1.codesec.submit",
			d, identity.DemoAgentID)
	}
	// The jetstream package refuses to bind push consumers, so the test sends
	// consumer info requests itself.
	exists := func(name string) bool {
		reply, err := e.b.AdminConn().RequestWithContext(ctx, "$JS.API.CONSUMER.INFO."+stream+"."+name, nil)
		if err != nil {
			t.Fatalf("consumer info of %s: %v", name, err)
		}
		return !strings.Contains(string(reply.Data), `"error"`)
	}
	waitFor(t, "flood consumer deleted", func() bool { return !exists("flood") })
	if !exists("own-inbox") {
		t.Error("the consumer delivering to the agent's own inbox was deleted")
	}
}

// TestBrokerConsumerKeptWhileViewStale creates a push consumer as the
// broker's own admin user before any heartbeat, while every view lookup
// fails with ErrStale. It is the broker's, so it must stay, as nats.go's
// recreated registry watch must.
func TestBrokerConsumerKeptWhileViewStale(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	setup, err := identity.Bootstrap(t.TempDir())
	if err != nil {
		t.Fatalf("Bootstrap: %v", err)
	}
	// No authority key: no heartbeat is ever written, so the view stays
	// stale for the whole test.
	b, err := broker.Start(ctx, broker.Config{DataDir: t.TempDir(), Root: setup.Root.Public(),
		OnError: func(err error) { t.Logf("broker: %v", err) }})
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(b.Shutdown)
	if _, err := b.View().Identity(identity.DemoAgentID); !errors.Is(err, identity.ErrStale) {
		t.Fatalf("view lookup: got %v, want ErrStale", err)
	}
	stream := "KV_" + identity.Bucket
	body := fmt.Sprintf(`{"stream_name":%q,"config":{"name":"broker-watch",`+
		`"deliver_subject":"_INBOX.broker-watch","ack_policy":"none","deliver_policy":"all"}}`,
		stream)
	reply, err := b.AdminConn().RequestWithContext(ctx,
		"$JS.API.CONSUMER.CREATE."+stream+".broker-watch", []byte(body))
	if err != nil {
		t.Fatalf("creating consumer: %v", err)
	}
	if strings.Contains(string(reply.Data), `"error"`) {
		t.Fatalf("creating consumer: %s", reply.Data)
	}
	// The audit advisory arrives within milliseconds; a deletion would
	// follow it at once.
	time.Sleep(time.Second)
	reply, err = b.AdminConn().RequestWithContext(ctx,
		"$JS.API.CONSUMER.INFO."+stream+".broker-watch", nil)
	if err != nil {
		t.Fatalf("consumer info: %v", err)
	}
	if strings.Contains(string(reply.Data), `"error"`) {
		t.Errorf("the broker deleted its own consumer: %s", reply.Data)
	}
}

// TestSweepDeletesConsumerTheAuditMissed creates push consumers as the
// broker's admin user, whose API audit advisories the audit check skips,
// as it would miss an advisory the server dropped. The periodic sweep must
// delete the one delivering onto a service's subject and report it, and
// keep the one delivering to an inbox.
func TestSweepDeletesConsumerTheAuditMissed(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	e := startEnv(t, func(c *broker.Config) { c.SweepInterval = 200 * time.Millisecond })
	denials := denialsOf(e)
	admin := e.b.AdminConn()
	stream := "KV_" + identity.Bucket
	request := func(subject, body string) string {
		t.Helper()
		reply, err := admin.RequestWithContext(ctx, subject, []byte(body))
		if err != nil {
			t.Fatalf("%s: %v", subject, err)
		}
		return string(reply.Data)
	}
	for name, deliver := range map[string]string{
		"missed": "nodex.v1.codesec.submit", "inbox": "_INBOX.sweep-test",
	} {
		body := fmt.Sprintf(`{"stream_name":%q,"config":{"name":%q,"deliver_subject":%q,`+
			`"ack_policy":"none","deliver_policy":"all"}}`, stream, name, deliver)
		if out := request("$JS.API.CONSUMER.CREATE."+stream+"."+name, body); strings.Contains(out,
			`"error"`) {
			t.Fatalf("creating consumer %s: %s", name, out)
		}
	}

	d := nextDenial(t, denials, broker.DenialConsumer)
	if d.Subject != "nodex.v1.codesec.submit" || !strings.Contains(d.Reason, "sweep") {
		t.Errorf("got denial %+v, want the sweep's report of nodex.v1.codesec.submit", d)
	}
	exists := func(name string) bool {
		return !strings.Contains(request("$JS.API.CONSUMER.INFO."+stream+"."+name, ""), `"error"`)
	}
	waitFor(t, "consumer delivering onto a service subject deleted", func() bool {
		return !exists("missed")
	})
	if !exists("inbox") {
		t.Error("the sweep deleted a consumer delivering to an inbox")
	}
}
