package bus

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	"github.com/nodexsec/nodex/libs/envelope"
)

// Publish seals body as an event to toRole and publishes it to JetStream on
// subject with Nats-Msg-Id set to the envelope id, so the stream drops a
// duplicate publish. It returns after the stream acknowledged the write.
func (c *Client) Publish(ctx context.Context, subject, toRole string, body any) error {
	_, err := c.publish(ctx, envelope.KindEvent, subject, toRole, body, time.Time{})

	return err
}

// PublishAsync seals body as an event to toRole like Publish, but returns
// once the message is queued on the connection. The future reports the
// stream's acknowledgement, or an error after Config.RequestTimeout. When
// too many publishes await their acknowledgement, it waits for room before
// sending, as jetstream.JetStream.PublishMsgAsync does.
func (c *Client) PublishAsync(ctx context.Context, subject, toRole string,
	body any) (_ jetstream.PubAckFuture, err error) {
	ctx, span := startSpan(ctx, trace.SpanKindProducer, "publish", subject, c.ID())
	defer func() { endSpan(span, err) }()
	msg, id, err := c.sealEvent(ctx, envelope.KindEvent, subject, toRole, body, time.Time{})
	if err != nil {
		return nil, err
	}
	fut, err := c.asyncJS.PublishMsgAsync(msg, jetstream.WithMsgID(id))
	if err != nil {
		return nil, fmt.Errorf("publishing %s on %s: %w", envelope.KindEvent, subject, err)
	}

	return fut, nil
}

// RepublishAsync sends m, the message of a future that PublishAsync
// returned, again. The message keeps its envelope and its Nats-Msg-Id, so
// the stream stores it once even when only the first acknowledgement was
// lost, as long as the resend falls within the stream's duplicate window.
func (c *Client) RepublishAsync(m *nats.Msg) (jetstream.PubAckFuture, error) {
	if m == nil || m.Header.Get(jetstream.MsgIDHeader) == "" {
		return nil, errors.New("bus: RepublishAsync needs a message PublishAsync sent")
	}
	fut, err := c.asyncJS.PublishMsgAsync(m)
	if err != nil {
		return nil, fmt.Errorf("republishing on %s: %w", m.Subject, err)
	}

	return fut, nil
}

// PublishJob is like Publish for a job: the envelope kind is job and the
// signed expiry makes consumers reject it after expires (zero: never).
func (c *Client) PublishJob(ctx context.Context, subject, toRole string, body any,
	expires time.Time) (*jetstream.PubAck, error) {
	return c.publish(ctx, envelope.KindJob, subject, toRole, body, expires)
}

func (c *Client) publish(ctx context.Context, kind envelope.Kind, subject, toRole string,
	body any, expires time.Time) (_ *jetstream.PubAck, err error) {
	ctx, span := startSpan(ctx, trace.SpanKindProducer, "publish", subject, c.ID())
	defer func() { endSpan(span, err) }()
	msg, id, err := c.sealEvent(ctx, kind, subject, toRole, body, expires)
	if err != nil {
		return nil, err
	}
	ack, err := c.js.PublishMsg(ctx, msg, jetstream.WithMsgID(id))
	if err != nil {
		return nil, fmt.Errorf("publishing %s on %s: %w", kind, subject, err)
	}

	return ack, nil
}

// sealEvent seals body as a stream message of kind and returns it with the
// envelope id, which is its Nats-Msg-Id.
func (c *Client) sealEvent(ctx context.Context, kind envelope.Kind, subject, toRole string,
	body any, expires time.Time) (*nats.Msg, string, error) {
	data, err := json.Marshal(body)
	if err != nil {
		return nil, "", fmt.Errorf("encoding %s for %s: %w", kind, subject, err)
	}
	sealed, err := c.codec.Seal(ctx, envelope.Message{
		Kind: kind, Subject: subject, To: []envelope.Target{envelope.ToRole(toRole)},
		ContentType: envelope.ContentTypeJSON, Expires: expires, Body: data,
	})
	if err != nil {
		return nil, "", fmt.Errorf("sealing %s for %s: %w", kind, subject, err)
	}
	msg := &nats.Msg{Subject: subject, Data: sealed.Frame, Header: nats.Header{}}
	injectTrace(ctx, msg.Header)

	return msg, sealed.MsgID(), nil
}

// Message is one opened stream message, as passed to a [StreamHandler].
type Message struct {
	Subject     string
	Sender      string // authenticated identity id
	SenderKind  string
	SenderRoles []string
	Body        []byte
	ID          string // envelope id in hex, also the Nats-Msg-Id
	Stream      string
	Sequence    uint64
	Delivered   uint64 // delivery count: above 1 after a nak or an ack timeout

	opened *envelope.Opened
}

// Decode unmarshals the body into v, rejecting unknown fields. A failure
// wraps envelope.ErrSchema.
func (m *Message) Decode(v any) error { return m.opened.Decode(v) }

// StreamHandler processes one stream message. Returning nil acks it. An
// error wrapping [ErrPoison] or envelope.ErrSchema terminates it, so it is
// never redelivered. Any other error naks it for redelivery after the
// consumer's NakDelay.
type StreamHandler func(ctx context.Context, m *Message) error

// ErrPoison marks a stream message that no retry can process.
var ErrPoison = errors.New("bus: poison message")

// ConsumeConfig names the stream and durable consumer to read.
type ConsumeConfig struct {
	Stream   string
	Consumer jetstream.ConsumerConfig // Durable "<service>-<purpose>", AckExplicit is forced
	NakDelay time.Duration            // redelivery delay after a transient failure; default 1s
	// MaxOpenAttempts bounds deliveries of a message that fails to open for
	// a reason that can heal (stale registry view, missing wrap); after it
	// the message is terminated. Default 5.
	MaxOpenAttempts uint64
}

// Consume creates or updates the durable consumer and opens each message
// with the stream freshness rules. Nats-Msg-Id must be the envelope id, and
// the signed timestamp must be within W of the stored stream time. The
// clock window and the replay cache do not apply, because redeliveries and
// late readers are normal. A message that fails an envelope check is
// terminated, except that a stale registry view or a missing wrap naks it,
// since both can heal.
func (c *Client) Consume(ctx context.Context, cfg ConsumeConfig, h StreamHandler) error {
	if cfg.NakDelay <= 0 {
		cfg.NakDelay = time.Second
	}
	if cfg.MaxOpenAttempts == 0 {
		cfg.MaxOpenAttempts = 5
	}
	cfg.Consumer.AckPolicy = jetstream.AckExplicitPolicy
	cons, err := c.js.CreateOrUpdateConsumer(ctx, cfg.Stream, cfg.Consumer)
	if err != nil {
		return fmt.Errorf("creating consumer %s on %s: %w", cfg.Consumer.Durable, cfg.Stream, err)
	}
	cc, err := cons.Consume(func(m jetstream.Msg) { c.consumeOne(m, cfg, h) })
	if err != nil {
		return fmt.Errorf("consuming %s on %s: %w", cfg.Consumer.Durable, cfg.Stream, err)
	}
	if err := c.track(nil, cc); err != nil {
		cc.Stop()
		return err
	}

	return nil
}

func (c *Client) consumeOne(jm jetstream.Msg, cfg ConsumeConfig, h StreamHandler) {
	if !c.begin() {
		return
	}
	defer c.inflight.Done()

	ctx := extractTrace(context.Background(), jm.Headers())
	ctx, span := startSpan(ctx, trace.SpanKindConsumer, "process", jm.Subject(), c.ID())
	defer span.End()
	md, err := jm.Metadata()
	if err != nil {
		c.reportError(ctx, jm.Subject(), fmt.Errorf("reading metadata: %w", err))
		_ = jm.Term()
		return
	}

	d := envelope.Delivery{
		Subject: jm.Subject(), Stream: md.Stream, Sequence: md.Sequence.Stream,
		StreamTime: md.Timestamp, MsgID: jm.Headers().Get(jetstream.MsgIDHeader),
	}
	opened, err := c.codec.Open(ctx, d, jm.Data())
	if err != nil {
		// A stale registry view or a missing wrap can heal, but only a
		// few times: a signed message whose wrap never appears must not
		// be redelivered forever.
		transient := errors.Is(err, envelope.ErrStale) || errors.Is(err, envelope.ErrWrapMissing)
		c.settle(ctx, jm, cfg, err, transient && md.NumDelivered < cfg.MaxOpenAttempts)
		return
	}

	span.SetAttributes(attribute.String(attrPeer, opened.Sender.ID),
		attribute.String(attrMessageID, d.MsgID))
	m := &Message{
		Subject: d.Subject, Sender: opened.Sender.ID, SenderKind: opened.Sender.Kind,
		SenderRoles: opened.Sender.Roles, Body: opened.Body, ID: d.MsgID,
		Stream: md.Stream, Sequence: md.Sequence.Stream, Delivered: md.NumDelivered,
		opened: opened,
	}
	if err := h(ctx, m); err != nil {
		c.settle(ctx, jm, cfg, err, !errors.Is(err, ErrPoison) && !errors.Is(err, envelope.ErrSchema))
		return
	}

	if err := jm.Ack(); err != nil {
		c.reportError(ctx, d.Subject, fmt.Errorf("acking %s seq %d: %w", md.Stream,
			md.Sequence.Stream, err))
	}
}

// settle naks a message that may succeed later and terminates the rest.
func (c *Client) settle(ctx context.Context, jm jetstream.Msg, cfg ConsumeConfig, cause error,
	retry bool) {
	var err error
	msgID := jm.Headers().Get(jetstream.MsgIDHeader)
	if retry {
		err = jm.NakWithDelay(cfg.NakDelay)
		cause = fmt.Errorf("nak msg_id %q: %w", msgID, cause)
	} else {
		err = jm.Term()
		cause = fmt.Errorf("term msg_id %q: %w", msgID, cause)
	}
	c.reportError(ctx, jm.Subject(), errors.Join(cause, err))
}
