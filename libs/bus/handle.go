package bus

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	"github.com/nodexsec/nodex/libs/envelope"
	"github.com/nodexsec/nodex/libs/errs"
)

// ContentTypeError marks a reply whose body is a coded error
// {"code", "name", "description"} instead of the handler's result.
const ContentTypeError = "application/nodex-error+json"

// Request is one opened request, as passed to a [Handler]. Every field comes
// from the envelope after its checks passed: Sender is authenticated.
type Request struct {
	Subject     string
	Sender      string   // authenticated identity id
	SenderKind  string   // "service", "agent" or "operator"
	SenderRoles []string // the sender's roles in the registry
	Body        []byte   // plaintext JSON

	opened *envelope.Opened
}

// Decode unmarshals the body into v, rejecting unknown fields. A failure
// wraps envelope.ErrSchema.
func (r *Request) Decode(v any) error { return r.opened.Decode(v) }

// ID returns the envelope id in lowercase hex. A handler that changes state
// records it in the same KV compare-and-set that records its effect, so a
// replayed copy routed to another replica changes nothing.
func (r *Request) ID() string { return hex.EncodeToString(r.opened.Header.ID[:]) }

// Handler handles one request. It returns the reply body (marshalled as JSON)
// or an error: an *errs.Error is sent as that coded error, anything else as
// errs.Internal, with the cause passed to Config.OnError only.
//
// ctx ends shortly before the requester stops waiting (see [HeaderTimeout]).
// An uncoded error that wraps context.DeadlineExceeded is sent as
// errs.Timeout. A handler still running when ctx ends gets errs.Timeout sent
// in its place, and its result is discarded.
type Handler func(ctx context.Context, req *Request) (any, error)

// HeaderTimeout is the NATS header in which [Client.Request] sends the time
// it will wait for the reply, in whole milliseconds. It is relative, so the
// handler's deadline does not depend on the two parties' clocks agreeing.
// It is not signed: a server that changes it can only make a handler stop
// sooner or later, and it can already delay or drop the request itself.
const HeaderTimeout = "Nodex-Timeout"

// Bounds on a handler's time budget.
const (
	// maxHandlerBudget caps the budget that a header may ask for.
	maxHandlerBudget = 10 * time.Minute
	// maxReplyMargin caps the time kept back from a budget for sealing and
	// sending the reply. Below the cap, a budget keeps back a tenth of itself.
	maxReplyMargin = 500 * time.Millisecond
)

// Handle serves subject with h. A non-empty queue makes the replicas of a
// service share requests. Up to Config.HandlerConcurrency requests run h at
// once, so one slow request does not hold up the others. Messages that fail
// an envelope check get no reply, because an unauthenticated sender cannot
// receive a confidential one.
func (c *Client) Handle(subject, queue string, h Handler) error {
	if h == nil {
		return fmt.Errorf("bus: nil handler for %s", subject)
	}
	slots := make(chan struct{}, c.cfg.HandlerConcurrency)
	cb := func(m *nats.Msg) {
		// Acquiring before the goroutine starts makes a full handler block
		// delivery instead of piling up goroutines, and counting in-flight
		// work here keeps Drain from missing a request about to start.
		slots <- struct{}{}
		if !c.begin() {
			<-slots
			return
		}
		received := time.Now()
		go func() {
			defer func() { <-slots; c.inflight.Done() }()
			c.serve(m, h, received)
		}()
	}
	var (
		sub *nats.Subscription
		err error
	)
	if queue != "" {
		sub, err = c.nc.QueueSubscribe(subject, queue, cb)
	} else {
		sub, err = c.nc.Subscribe(subject, cb)
	}
	if err != nil {
		return fmt.Errorf("subscribing to %s: %w", subject, err)
	}
	if err := c.track(sub, nil); err != nil {
		_ = sub.Unsubscribe()
		return err
	}

	return nil
}

// serve opens one request, applies the sender's rate limit, runs h and
// sends the sealed reply. received is when the subscription delivered m.
func (c *Client) serve(m *nats.Msg, h Handler, received time.Time) {
	ctx := extractTrace(context.Background(), m.Header)

	ctx, span := startSpan(ctx, trace.SpanKindServer, "process", m.Subject, c.ID())
	var spanErr error
	defer func() { endSpan(span, spanErr) }()

	opened, err := c.codec.Open(ctx, envelope.Delivery{Subject: m.Subject, Reply: m.Reply}, m.Data)
	if err != nil {
		spanErr = errs.InvalidRequest.Wrap(err)
		return // reported through the codec's OnReject hook
	}
	// The peer is the authenticated sender, known only after the open.
	span.SetAttributes(attribute.String(attrPeer, opened.Sender.ID))
	if !c.limiter.Allow(opened.Sender.ID) {
		spanErr = c.sendResult(ctx, m.Subject, opened, errs.RateLimited, nil)
		return
	}
	req := &Request{
		Subject: m.Subject, Sender: opened.Sender.ID, SenderKind: opened.Sender.Kind,
		SenderRoles: opened.Sender.Roles, Body: opened.Body, opened: opened,
	}
	hctx, cancel := handlerContext(ctx, m.Header, c.cfg.RequestTimeout, received,
		opened.Header.Timestamp)
	defer cancel()
	spanErr = c.runHandler(ctx, hctx, h, req)
}

// handlerContext returns the context a handler runs under. Its deadline is
// the requester's budget from [HeaderTimeout] (fallback when the header is
// missing or invalid), counted from when the request was sealed, less a
// margin for the reply. The signed timestamp dates the sealing, but an
// envelope accepts clocks that disagree by up to its freshness window, so at
// most half the budget is counted as spent before received.
func handlerContext(ctx context.Context, h nats.Header, fallback time.Duration,
	received time.Time, sealedMs int64) (context.Context, context.CancelFunc) {
	budget := fallback
	if ms, err := strconv.ParseInt(h.Get(HeaderTimeout), 10, 64); err == nil && ms > 0 {
		budget = min(time.Duration(ms)*time.Millisecond, maxHandlerBudget)
	}
	spent := min(max(received.Sub(time.UnixMilli(sealedMs)), 0), budget/2)
	margin := min(budget/10, maxReplyMargin)

	return context.WithDeadline(ctx, received.Add(budget-spent-margin))
}

// runHandler runs h in the calling goroutine and sends one reply: h's
// result, or errs.Timeout once hctx ends while h is still running. It
// returns only after h has returned and the reply was sent, so the caller
// keeps its HandlerConcurrency slot and its Drain count until then, even
// after a timeout reply. It returns the coded error of the reply sent, or
// nil. Running h inline, with the timeout reply sent from a goroutine that
// starts only at the deadline, spares each request a goroutine start and a
// channel hand-off.
func (c *Client) runHandler(ctx, hctx context.Context, h Handler, req *Request) error {
	// claimed is set by whichever of h's return and the deadline comes
	// first, and only that one sends a reply.
	var (
		claimed    atomic.Bool
		timeoutErr error
	)
	timeoutSent := make(chan struct{})
	stop := context.AfterFunc(hctx, func() {
		defer close(timeoutSent)
		if claimed.CompareAndSwap(false, true) {
			timeoutErr = c.sendResult(ctx, req.Subject, req.opened, nil,
				errs.Timeout.Wrap(fmt.Errorf("handler timed out: %w", hctx.Err())))
		}
	})
	result, err := h(hctx, req)
	// A result that arrived with the deadline still counts when it claims
	// the reply before the timeout does.
	if stop() || claimed.CompareAndSwap(false, true) {
		if err != nil && errs.From(err).Code == errs.Internal.Code &&
			errors.Is(err, context.DeadlineExceeded) {
			result, err = nil, errs.Timeout.Wrap(err)
		}
		return c.sendResult(ctx, req.Subject, req.opened, result, err)
	}
	<-timeoutSent

	return timeoutErr
}

// sendResult sends result, or err as a coded error, as the reply to opened.
// Uncoded errors and coded ones with a cause go to Config.OnError, and the
// requester gets only the public code. It returns the coded error, or nil.
func (c *Client) sendResult(ctx context.Context, subject string, opened *envelope.Opened,
	result any, err error) error {
	if errors.Is(err, envelope.ErrSchema) {
		err = errs.InvalidRequest.Wrap(err)
	}
	var coded *errs.Error
	if err != nil {
		coded = errs.From(err)
		if coded.Code == errs.Internal.Code || coded.Unwrap() != nil {
			c.reportError(ctx, subject, err)
		}
		result = coded.Public()
	}
	if err := c.reply(ctx, opened, result); err != nil {
		c.reportError(ctx, subject, err)
	}
	if coded == nil {
		return nil
	}

	return coded
}

// reply seals result as the reply to opened and publishes it.
func (c *Client) reply(ctx context.Context, opened *envelope.Opened, result any) error {
	contentType := envelope.ContentTypeJSON
	if _, ok := result.(*errs.Error); ok {
		contentType = ContentTypeError
	}
	body, err := json.Marshal(result)
	if err != nil {
		return fmt.Errorf("encoding reply: %w", err)
	}
	sealed, err := c.codec.SealReply(opened, contentType, body)
	if err != nil {
		return fmt.Errorf("sealing reply: %w", err)
	}
	msg := &nats.Msg{Subject: opened.Header.ReplySubject, Data: sealed.Frame, Header: nats.Header{}}
	injectTrace(ctx, msg.Header)
	if err := c.nc.PublishMsg(msg); err != nil {
		return fmt.Errorf("publishing reply: %w", err)
	}

	return nil
}
