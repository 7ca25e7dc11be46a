package bus

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
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
	var result any
	if !c.limiter.Allow(opened.Sender.ID) {
		result = errs.RateLimited
	} else {
		req := &Request{
			Subject: m.Subject, Sender: opened.Sender.ID, SenderKind: opened.Sender.Kind,
			SenderRoles: opened.Sender.Roles, Body: opened.Body, opened: opened,
		}
		hctx, cancel := handlerContext(ctx, m.Header, c.cfg.RequestTimeout, received,
			opened.Header.Timestamp)
		var wait func()
		result, wait, err = runHandler(hctx, h, req)
		// The handler keeps its slot until it returns, even after a timeout
		// reply, so HandlerConcurrency and Drain still count it.
		defer func() { wait(); cancel() }()
		if errors.Is(err, envelope.ErrSchema) {
			err = errs.InvalidRequest.Wrap(err)
		}
		if err != nil {
			coded := errs.From(err)
			if coded.Code == errs.Internal.Code || coded.Unwrap() != nil {
				c.reportError(ctx, m.Subject, err)
			}
			result = coded.Public()
			spanErr = coded
		}
	}
	if err := c.reply(ctx, opened, result); err != nil {
		c.reportError(ctx, m.Subject, err)
	}
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

// runHandler runs h and returns its result, or errs.Timeout when ctx ends
// first. wait blocks until h has returned.
func runHandler(ctx context.Context, h Handler, req *Request) (any, func(), error) {
	type outcome struct {
		result any
		err    error
	}
	done := make(chan outcome, 1)
	go func() {
		result, err := h(ctx, req)
		done <- outcome{result, err}
	}()
	finished := func(o outcome) (any, func(), error) {
		wait := func() {}
		if o.err != nil && errs.From(o.err).Code == errs.Internal.Code &&
			errors.Is(o.err, context.DeadlineExceeded) {
			return nil, wait, errs.Timeout.Wrap(o.err)
		}
		return o.result, wait, o.err
	}
	select {
	case o := <-done:
		return finished(o)
	case <-ctx.Done():
	}
	// A result that arrived with the deadline still counts.
	select {
	case o := <-done:
		return finished(o)
	default:
		return nil, func() { <-done }, errs.Timeout.Wrap(fmt.Errorf("handler timed out: %w",
			ctx.Err()))
	}
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
