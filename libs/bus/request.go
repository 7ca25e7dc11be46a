package bus

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nuid"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	"github.com/nodexsec/nodex/libs/envelope"
	"github.com/nodexsec/nodex/libs/errs"
)

// Request seals req to toRole (for example "service:codesec"), sends it on
// subject and decodes the reply into resp. It accepts one reply, only from
// an identity holding toRole and only bound to this request. Other messages
// on the reply subject are rejected while it keeps waiting, so a forged
// reply arriving first cannot block the real one. A coded error reply is
// returned as *errs.Error.
func (c *Client) Request(ctx context.Context, subject, toRole string, req, resp any) (err error) {
	ctx, span := startSpan(ctx, trace.SpanKindClient, "send", subject, c.ID())
	span.SetAttributes(attribute.String(attrPeer, toRole))
	defer func() { endSpan(span, err) }()
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.cfg.RequestTimeout)
		defer cancel()
	}
	body, err := json.Marshal(req)
	if err != nil {
		return fmt.Errorf("encoding request for %s: %w", subject, err)
	}
	inbox, replies, done, err := c.newReplyInbox()
	if err != nil {
		return err
	}
	defer done()

	sealed, err := c.codec.Seal(ctx, envelope.Message{
		Kind: envelope.KindRequest, Subject: subject, To: []envelope.Target{envelope.ToRole(toRole)},
		ContentType: envelope.ContentTypeJSON, ReplySubject: inbox, Body: body,
	})
	if err != nil {
		return fmt.Errorf("sealing request for %s: %w", subject, err)
	}
	msg := &nats.Msg{Subject: subject, Reply: inbox, Data: sealed.Frame, Header: nats.Header{}}
	injectTrace(ctx, msg.Header)
	deadline, _ := ctx.Deadline()
	msg.Header.Set(HeaderTimeout, strconv.FormatInt(time.Until(deadline).Milliseconds(), 10))
	if err := c.nc.PublishMsg(msg); err != nil {
		return fmt.Errorf("publishing request on %s: %w", subject, err)
	}
	// The reply key is derived while the request travels, not after the
	// reply arrives.
	sealed.PrepareReply()

	opened, err := c.awaitReply(ctx, replies, sealed, toRole)
	if err != nil {
		return fmt.Errorf("awaiting reply on %s: %w", subject, err)
	}

	return decodeReply(opened, resp)
}

// awaitReply returns the first message that opens as the reply to sealed.
func (c *Client) awaitReply(ctx context.Context, replies <-chan *nats.Msg, sealed *envelope.Sealed,
	toRole string) (*envelope.Opened, error) {
	for {
		select {
		case <-ctx.Done():
			if errors.Is(ctx.Err(), context.DeadlineExceeded) {
				return nil, errs.Timeout.Wrap(ctx.Err())
			}
			return nil, ctx.Err()
		case m := <-replies:
			d := envelope.Delivery{Subject: m.Subject}
			opened, err := c.codec.OpenReply(ctx, d, m.Data, sealed, toRole)
			if err == nil {
				return opened, nil
			}
		}
	}
}

func decodeReply(opened *envelope.Opened, resp any) error {
	if opened.Header.ContentType == ContentTypeError {
		var e errs.Error
		if err := json.Unmarshal(opened.Body, &e); err != nil || e.Code == 0 {
			return fmt.Errorf("%w: error reply is not a coded error", envelope.ErrSchema)
		}
		if known := errs.Lookup(e.Code); known != nil {
			return known.Withf("%s", e.Description)
		}
		return &e
	}
	if resp == nil {
		return nil
	}

	return opened.Decode(resp)
}

// newReplyInbox returns a fresh reply subject under this Client's inbox
// prefix, the channel its messages arrive on and a func that releases it.
func (c *Client) newReplyInbox() (string, <-chan *nats.Msg, func(), error) {
	c.inboxOnce.Do(func() {
		c.inbox = c.nc.NewInbox()
		c.inboxSub, c.inboxErr = c.nc.Subscribe(c.inbox+".*", c.routeReply)
		if c.inboxErr != nil {
			c.inboxErr = fmt.Errorf("subscribing to reply inbox: %w", c.inboxErr)
		}
	})
	if c.inboxErr != nil {
		return "", nil, nil, c.inboxErr
	}
	subject := c.inbox + "." + nuid.Next()
	ch := make(chan *nats.Msg, 16)
	c.pendingMu.Lock()
	c.pending[subject] = ch
	c.pendingMu.Unlock()
	done := func() {
		c.pendingMu.Lock()
		delete(c.pending, subject)
		c.pendingMu.Unlock()
	}

	return subject, ch, done, nil
}

// routeReply hands a message on the inbox to its waiting Request. Extra
// messages beyond the channel's buffer are dropped: only one reply is ever
// accepted, and a flood of forgeries must not block the subscription.
func (c *Client) routeReply(m *nats.Msg) {
	c.pendingMu.Lock()
	ch := c.pending[m.Subject]
	c.pendingMu.Unlock()
	if ch == nil {
		return
	}
	select {
	case ch <- m:
	default:
	}
}
