package broker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// apiAuditSubject is the subject of the server's audit advisories: one for
// every JetStream API request of the NODEX account, with the requesting
// client and the request body.
const apiAuditSubject = "$JS.EVENT.ADVISORY.API"

// brokerUsers are the password users of the server configuration's
// auth_users, which the broker itself connects as. No registry identity
// can have these names: identity.ValidateID reserves their prefix.
var brokerUsers = map[string]bool{"nodex-admin": true, "nodex-auth": true, "nodex-sys": true}

// NATS permissions see only the subject of a consumer create request, not
// its body, so they cannot stop a stream reader from creating a push
// consumer that delivers to any subject of the account, for example a
// service's request subject. The broker therefore reads the API audit
// advisory of each create and deletes every push consumer whose deliver
// subject lies outside its creator's inbox (InboxPrefix). Pull consumers
// and push consumers delivering to the creator's inbox, such as the
// ordered consumers of KV watches, stay.
//
// NOTE: the check runs after the server created the consumer, so a push
// consumer may deliver for the few milliseconds until the broker deletes it.
func (b *Broker) subscribeConsumerAudit() error {
	// One broker of a cluster handles each advisory.
	if _, err := b.admin.QueueSubscribe(apiAuditSubject, "nodex-broker-audit", b.onAPIAudit); err != nil {
		return fmt.Errorf("subscribing to %s: %w", apiAuditSubject, err)
	}
	if err := b.admin.Flush(); err != nil {
		return fmt.Errorf("flushing API audit subscription: %w", err)
	}

	return nil
}

func (b *Broker) onAPIAudit(msg *nats.Msg) {
	var audit server.JSAPIAudit
	if err := json.Unmarshal(msg.Data, &audit); err != nil {
		b.cfg.OnError(fmt.Errorf("decoding JetStream API audit: %w", err))
		return
	}
	if audit.Client == nil || !(strings.HasPrefix(audit.Subject, "$JS.API.CONSUMER.CREATE.") ||
		strings.HasPrefix(audit.Subject, "$JS.API.CONSUMER.DURABLE.CREATE.")) {
		return
	}
	var req server.CreateConsumerRequest
	if err := json.Unmarshal([]byte(audit.Request), &req); err != nil ||
		req.Config.DeliverSubject == "" {
		return // not a push consumer, or not created from this body
	}
	id := clientIdentity(*audit.Client)
	// The broker's own users bypass the callout and are not in the
	// registry; every other user is a registry identity. A view lookup
	// cannot tell them apart: while the view waits for a heartbeat it
	// fails with ErrStale for everyone, and the broker then deleted its
	// own registry watch when nats.go recreated that ordered consumer.
	if brokerUsers[id] {
		return
	}
	if strings.HasPrefix(req.Config.DeliverSubject, InboxPrefix(id)+".") {
		return
	}
	var resp server.JSApiConsumerCreateResponse
	if err := json.Unmarshal([]byte(audit.Response), &resp); err != nil || resp.ConsumerInfo == nil {
		return // the server refused it
	}
	go b.removeConsumer(id, audit.Client, resp.ConsumerInfo.Stream, resp.ConsumerInfo.Name,
		req.Config.DeliverSubject)
}

// removeConsumer deletes a push consumer that delivered outside its
// creator's inbox and reports the denial.
func (b *Broker) removeConsumer(id string, client *server.ClientInfo, stream, name, deliver string) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()

	reason := fmt.Sprintf("push consumer %s on stream %s delivered to %q, outside %s.>; deleted",
		name, stream, deliver, InboxPrefix(id))
	if err := b.js.DeleteConsumer(ctx, stream, name); err != nil {
		b.cfg.OnError(fmt.Errorf("deleting consumer %s of %q on stream %s: %w", name, id, stream, err))
		reason = fmt.Sprintf("push consumer %s on stream %s delivered to %q, outside %s.>; "+
			"deleting it failed", name, stream, deliver, InboxPrefix(id))
	}
	b.denials.add(Denial{Kind: DenialConsumer, Identity: id, ConnID: client.ID,
		Server: client.Server, Host: client.Host, Subject: deliver, Reason: reason}, time.Now())
}

// sweepConsumers deletes every push consumer of the account whose deliver
// subject lies outside all inboxes (_INBOX.>). It backs up the audit
// check, which the server's at-most-once advisory can miss, and retries a
// delete that failed there. Without the advisory the creator is unknown,
// so the wider rule applies: a push consumer delivering into another
// identity's inbox is left to the audit check, while one delivering onto
// a service's subjects, the flood risk, is deleted.
func (b *Broker) sweepConsumers() error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	streams := b.js.ListStreams(ctx)
	for info := range streams.Info() {
		stream, err := b.js.Stream(ctx, info.Config.Name)
		if errors.Is(err, jetstream.ErrStreamNotFound) {
			continue // deleted since the listing
		}
		if err != nil {
			b.cfg.OnError(fmt.Errorf("binding stream %s for the consumer sweep: %w",
				info.Config.Name, err))
			continue
		}
		consumers := stream.ListConsumers(ctx)
		for c := range consumers.Info() {
			deliver := c.Config.DeliverSubject
			if deliver == "" || strings.HasPrefix(deliver, "_INBOX.") {
				continue
			}
			reason := fmt.Sprintf("push consumer %s on stream %s delivered to %q, outside "+
				"every inbox; deleted by the sweep", c.Name, c.Stream, deliver)
			err := b.js.DeleteConsumer(ctx, c.Stream, c.Name)
			if errors.Is(err, jetstream.ErrConsumerNotFound) {
				continue // another node of the cluster deleted it first
			}
			if err != nil {
				b.cfg.OnError(fmt.Errorf("deleting consumer %s on stream %s: %w", c.Name,
					c.Stream, err))
				reason = fmt.Sprintf("push consumer %s on stream %s delivered to %q, outside "+
					"every inbox; deleting it failed", c.Name, c.Stream, deliver)
			}
			b.denials.add(Denial{Kind: DenialConsumer, Subject: deliver, Reason: reason},
				time.Now())
		}
		if err := consumers.Err(); err != nil && !errors.Is(err, jetstream.ErrStreamNotFound) {
			b.cfg.OnError(fmt.Errorf("listing consumers of stream %s: %w", info.Config.Name, err))
		}
	}
	if err := streams.Err(); err != nil {
		return fmt.Errorf("listing streams for the consumer sweep: %w", err)
	}

	return nil
}
