package broker_test

import (
	"context"
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
