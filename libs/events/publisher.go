package events

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/trace"
)

// Sink stores one event body on subject, encrypted to toRole, and returns
// once the stream has acknowledged it. libs/bus's Client implements it.
type Sink interface {
	Publish(ctx context.Context, subject, toRole string, body any) error
}

// AsyncSink is a [Sink] that can also hand an event to the stream without
// waiting for the acknowledgement, so that one worker keeps many events in
// flight. libs/bus's Client implements it.
type AsyncSink interface {
	Sink
	// PublishAsync seals body like Publish and returns once the message is
	// queued on the connection. The future reports the stream's
	// acknowledgement or error.
	PublishAsync(ctx context.Context, subject, toRole string, body any) (jetstream.PubAckFuture, error)
	// RepublishAsync sends m, the message of an earlier future, again. It
	// keeps its Nats-Msg-Id, so the stream stores the event once even when
	// the first copy arrived and only its acknowledgement was lost.
	RepublishAsync(m *nats.Msg) (jetstream.PubAckFuture, error)
}

// PublisherOptions tune a [Publisher]. Zero fields take the defaults.
type PublisherOptions struct {
	// QueueSize bounds the events waiting for an asynchronous publish;
	// default 4096.
	QueueSize int
	// EnqueueTimeout is how long Publish waits for room in a full queue
	// before it counts the event as lost; default 2s. The wait slows a
	// flood of events down to what the stream absorbs instead of losing
	// them. A negative value never waits.
	EnqueueTimeout time.Duration
	// Workers publish queued events in parallel; default 4.
	Workers int
	// MaxBatch is how many queued events one worker hands to an [AsyncSink]
	// before it waits for their acknowledgements; default 64. Plain sinks
	// publish one event at a time.
	MaxBatch int
	// Linger is how long a batch for an [AsyncSink] waits for more events
	// after its first one, unless the previous batch was full or Close was
	// called. The default is 5ms, and a negative value means no wait. A
	// batch wakes one worker
	// and lets the connection send its events in fewer socket writes. The
	// sealing work then overlaps fewer of the audited requests.
	Linger time.Duration
	// Attempts is how often an asynchronous publish is tried; default 3.
	Attempts int
	// Timeout bounds one publish, including the wait for its
	// acknowledgement; default 5s.
	Timeout time.Duration
	// OnLost is called, outside any lock, for every event that could not be
	// persisted, with the reason. It must not block.
	OnLost func(ev SecurityEvent, err error)
}

// Publisher emits the events of one party. Publish is asynchronous and waits
// only while its queue is full; PublishSync waits for the stream's
// acknowledgement, for operations that must not happen without their audit
// record. A Publisher is safe for concurrent use.
type Publisher struct {
	sink   Sink
	async  AsyncSink // sink, when it supports asynchronous publishing
	source string
	opts   PublisherOptions
	queue  chan queued
	// batches carries batches from the one goroutine that collects them to
	// the workers; nil for a plain Sink.
	batches chan []queued
	closing chan struct{} // closed by Close, ending any Linger at once
	wg      sync.WaitGroup

	mu     sync.RWMutex
	closed bool

	published atomic.Uint64
	lost      atomic.Uint64
	pending   atomic.Int64 // queued or in flight, not yet published or lost
}

// Errors an event lost by [Publisher.Publish] is reported with.
var (
	// ErrClosed is returned when publishing on a closed Publisher.
	ErrClosed = errors.New("events: publisher closed")
	// ErrQueueFull reports an event that found the queue full for longer
	// than [PublisherOptions.EnqueueTimeout].
	ErrQueueFull = errors.New("events: publish queue full")
)

// queued is one event waiting for an asynchronous publish, with the span
// of the Publish call, so that its publish span joins the caller's trace.
type queued struct {
	ev   SecurityEvent
	span trace.SpanContext
}

// NewPublisher returns a Publisher that stamps events with source (the
// party's identity id) and stores them through sink. It panics on a nil sink
// or empty source, which are programming errors.
func NewPublisher(sink Sink, source string, opts PublisherOptions) *Publisher {
	if sink == nil || source == "" {
		panic("events: NewPublisher needs a sink and a source")
	}
	setDefaults(&opts)
	p := &Publisher{sink: sink, source: source, opts: opts,
		queue: make(chan queued, opts.QueueSize), closing: make(chan struct{})}
	p.async, _ = sink.(AsyncSink)
	if p.async != nil {
		// One collector, so that events arriving close together share a
		// batch instead of waking one worker each.
		p.batches = make(chan []queued, opts.Workers)
		p.wg.Add(1)
		go p.collect()
	}
	for range opts.Workers {
		p.wg.Add(1)
		go p.work()
	}

	return p
}

func setDefaults(o *PublisherOptions) {
	if o.QueueSize <= 0 {
		o.QueueSize = 4096
	}
	if o.EnqueueTimeout == 0 {
		o.EnqueueTimeout = 2 * time.Second
	}
	if o.Workers <= 0 {
		o.Workers = 4
	}
	if o.MaxBatch <= 0 {
		o.MaxBatch = 64
	}
	if o.Linger == 0 {
		o.Linger = 5 * time.Millisecond
	}
	if o.Attempts <= 0 {
		o.Attempts = 3
	}
	if o.Timeout <= 0 {
		o.Timeout = 5 * time.Second
	}
}

// Publish queues ev for an asynchronous publish. When the queue is full it
// waits up to [PublisherOptions.EnqueueTimeout] for room. ctx does not cut
// that wait short, because the fact being audited has already happened. An
// event that cannot be queued or persisted is counted in Lost and passed to
// OnLost, never dropped silently. The publish span is a child of ctx's
// span, so the event's trace context names the trace that raised it.
func (p *Publisher) Publish(ctx context.Context, ev SecurityEvent) {
	if err := p.stamp(ctx, &ev); err != nil {
		p.markLost(ev, err)
		return
	}
	p.mu.RLock()
	defer p.mu.RUnlock()
	if p.closed {
		p.markLost(ev, ErrClosed)
		return
	}
	p.pending.Add(1)
	q := queued{ev: ev, span: trace.SpanContextFromContext(ctx)}
	select {
	case p.queue <- q:
		return
	default:
	}
	if p.opts.EnqueueTimeout > 0 {
		t := time.NewTimer(p.opts.EnqueueTimeout)
		defer t.Stop()
		select {
		case p.queue <- q:
			return
		case <-t.C:
		}
	}
	p.pending.Add(-1)
	p.markLost(ev, fmt.Errorf("%w for %s", ErrQueueFull, p.opts.EnqueueTimeout))
}

// PublishSync stores ev and returns once the stream acknowledged it, or the
// error that prevented it. Callers that must audit before acting fail the
// operation on an error.
func (p *Publisher) PublishSync(ctx context.Context, ev SecurityEvent) error {
	if err := p.stamp(ctx, &ev); err != nil {
		return err
	}
	if err := p.send(ctx, ev); err != nil {
		return err
	}
	p.published.Add(1)

	return nil
}

// PublishReportedSync stores ev, an event that another identity reported
// to this party, and returns once the stream acknowledged it. Unlike
// [Publisher.PublishSync] it keeps ev.Source, which must name the
// reporter, and publishes under this party's own emitter token, so NATS
// still vouches only for the relaying connection. The relay is
// responsible for having authenticated the reporter.
func (p *Publisher) PublishReportedSync(ctx context.Context, ev SecurityEvent) error {
	reporter := ev.Source
	if reporter == "" {
		return fmt.Errorf("%w: a reported event needs its reporter as source", ErrInvalid)
	}
	if err := p.stamp(ctx, &ev); err != nil {
		return err
	}
	ev.Source = reporter
	if err := ev.Validate(); err != nil {
		return err
	}
	if err := p.send(ctx, ev); err != nil {
		return err
	}
	p.published.Add(1)

	return nil
}

// Published returns how many events the stream acknowledged.
func (p *Publisher) Published() uint64 { return p.published.Load() }

// Lost returns how many events could not be persisted.
func (p *Publisher) Lost() uint64 { return p.lost.Load() }

// Pending returns how many events Publish accepted that are neither
// acknowledged nor lost yet.
func (p *Publisher) Pending() int64 { return p.pending.Load() }

// Close stops accepting events and waits, up to ctx's deadline, for queued
// and in-flight events to be acknowledged. When ctx ends first, Close
// returns an error naming how many events are still pending. The workers
// keep publishing them, and each one is still counted as published or lost.
func (p *Publisher) Close(ctx context.Context) error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil
	}
	p.closed = true
	close(p.queue)
	close(p.closing)
	p.mu.Unlock()

	done := make(chan struct{})
	go func() { p.wg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("events: closing publisher with %d events pending: %w",
			p.pending.Load(), ctx.Err())
	}
}

func (p *Publisher) stamp(ctx context.Context, ev *SecurityEvent) error {
	if ev.ID == "" {
		ev.ID = uuid.NewString()
	}
	if ev.Time.IsZero() {
		ev.Time = time.Now().UTC()
	}
	ev.Source = p.source
	if ev.TraceID == "" {
		if sc := trace.SpanContextFromContext(ctx); sc.HasTraceID() {
			ev.TraceID = sc.TraceID().String()
		}
	}

	return ev.Validate()
}

func (p *Publisher) send(ctx context.Context, ev SecurityEvent) error {
	subj, err := Subject(p.source, ev.Type)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, p.opts.Timeout)
	defer cancel()
	if err := p.sink.Publish(ctx, subj, AudienceRole, ev); err != nil {
		return fmt.Errorf("events: publishing %s event %s: %w", ev.Type, ev.ID, err)
	}

	return nil
}

// work publishes until Close: queued events one at a time through a plain
// Sink, or the collected batches through an AsyncSink.
func (p *Publisher) work() {
	defer p.wg.Done()
	if p.async == nil {
		for q := range p.queue {
			p.publishOne(q)
		}
		return
	}
	for batch := range p.batches {
		p.publishBatch(batch)
	}
}

// collect groups queued events into batches of up to MaxBatch. After the
// first event of a batch it sleeps for Linger instead of waiting on the
// queue, so the events that arrive meanwhile do not wake it one by one.
// After a full batch it does not sleep, so a flood is not slowed by Linger.
func (p *Publisher) collect() {
	defer p.wg.Done()
	defer close(p.batches)
	full := false
	for q := range p.queue {
		if !full && p.opts.Linger > 0 {
			p.linger()
		}
		batch := make([]queued, 1, p.opts.MaxBatch)
		batch[0] = q
		batch = p.fill(batch)
		full = len(batch) == p.opts.MaxBatch
		p.batches <- batch
	}
}

// linger waits for Linger, or until Close.
func (p *Publisher) linger() {
	t := time.NewTimer(p.opts.Linger)
	defer t.Stop()
	select {
	case <-t.C:
	case <-p.closing:
	}
}

// fill appends the events already queued to batch, up to MaxBatch.
func (p *Publisher) fill(batch []queued) []queued {
	for len(batch) < p.opts.MaxBatch {
		select {
		case q, ok := <-p.queue:
			if !ok {
				return batch
			}
			batch = append(batch, q)
		default:
			return batch
		}
	}

	return batch
}

func (p *Publisher) publishOne(q queued) {
	ev := q.ev
	// The caller's context may be cancelled by now, so only its span
	// travels: the publish span becomes a child of the Publish call's.
	ctx := trace.ContextWithSpanContext(context.Background(), q.span)
	var err error
	for attempt := range p.opts.Attempts {
		if attempt > 0 {
			time.Sleep(backoff(attempt))
		}
		if err = p.send(ctx, ev); err == nil {
			break
		}
	}
	p.settle(ev, err)
}

// inflight is one event of a batch and the future of its latest publish.
type inflight struct {
	ev   SecurityEvent
	span trace.SpanContext      // the Publish call's span, parent of the publish span
	fut  jetstream.PubAckFuture // nil when handing it to the sink failed
	err  error
}

// publishBatch hands every event to the sink, then waits for each
// acknowledgement in turn and resends what failed, keeping the message and
// so its Nats-Msg-Id.
func (p *Publisher) publishBatch(batch []queued) {
	flights := make([]inflight, len(batch))
	for i, q := range batch {
		flights[i] = inflight{ev: q.ev, span: q.span}
		flights[i].fut, flights[i].err = p.publishAsync(q.span, q.ev)
	}
	for i := range flights {
		f := &flights[i]
		for attempt := 1; ; attempt++ {
			if f.err == nil {
				f.err = p.await(f)
			}
			if f.err == nil || attempt >= p.opts.Attempts {
				break
			}
			time.Sleep(backoff(attempt))
			if f.fut != nil {
				f.fut, f.err = p.async.RepublishAsync(f.fut.Msg())
			} else {
				f.fut, f.err = p.publishAsync(f.span, f.ev)
			}
		}
		p.settle(f.ev, f.err)
	}
}

func (p *Publisher) publishAsync(span trace.SpanContext, ev SecurityEvent) (jetstream.PubAckFuture, error) {
	subj, err := Subject(p.source, ev.Type)
	if err != nil {
		return nil, err
	}
	ctx := trace.ContextWithSpanContext(context.Background(), span)
	ctx, cancel := context.WithTimeout(ctx, p.opts.Timeout)
	defer cancel()
	fut, err := p.async.PublishAsync(ctx, subj, AudienceRole, ev)
	if err != nil {
		return nil, fmt.Errorf("events: publishing %s event %s: %w", ev.Type, ev.ID, err)
	}

	return fut, nil
}

// await returns nil once the stream acknowledged f's message, or why not.
func (p *Publisher) await(f *inflight) error {
	t := time.NewTimer(p.opts.Timeout)
	defer t.Stop()
	select {
	case <-f.fut.Ok():
		return nil
	case err := <-f.fut.Err():
		return fmt.Errorf("events: storing %s event %s: %w", f.ev.Type, f.ev.ID, err)
	case <-t.C:
		return fmt.Errorf("events: storing %s event %s: no acknowledgement after %s",
			f.ev.Type, f.ev.ID, p.opts.Timeout)
	}
}

// settle counts one event Publish accepted as published or, with err, lost.
func (p *Publisher) settle(ev SecurityEvent, err error) {
	p.pending.Add(-1)
	if err != nil {
		p.markLost(ev, err)
		return
	}
	p.published.Add(1)
}

// backoff is the pause before retry number attempt (1 for the first retry).
func backoff(attempt int) time.Duration { return time.Duration(attempt) * 100 * time.Millisecond }

func (p *Publisher) markLost(ev SecurityEvent, err error) {
	p.lost.Add(1)
	if p.opts.OnLost != nil {
		p.opts.OnLost(ev, err)
	}
}
