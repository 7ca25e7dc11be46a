package events

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"go.opentelemetry.io/otel/trace"
)

// Sink stores one event body on subject, encrypted to toRole, and returns
// once the stream has acknowledged it. libs/bus's Client implements it.
type Sink interface {
	Publish(ctx context.Context, subject, toRole string, body any) error
}

// PublisherOptions tune a [Publisher]. Zero fields take the defaults.
type PublisherOptions struct {
	// QueueSize bounds the events waiting for an asynchronous publish;
	// default 4096. When it is full, Publish counts the event as lost.
	QueueSize int
	// Workers publish queued events in parallel; default 4.
	Workers int
	// Attempts is how often an asynchronous publish is tried; default 3.
	Attempts int
	// Timeout bounds one publish; default 5s.
	Timeout time.Duration
	// OnLost is called, outside any lock, for every event that could not be
	// persisted, with the reason. It must not block.
	OnLost func(ev SecurityEvent, err error)
}

// Publisher emits the events of one party. Publish is asynchronous and never
// blocks the caller; PublishSync waits for the stream's acknowledgement, for
// operations that must not happen without their audit record. A Publisher is
// safe for concurrent use.
type Publisher struct {
	sink   Sink
	source string
	opts   PublisherOptions
	queue  chan queued
	wg     sync.WaitGroup

	mu     sync.RWMutex
	closed bool

	published atomic.Uint64
	lost      atomic.Uint64
}

// queued is one event waiting for an asynchronous publish, with the span
// of the Publish call, so that its publish span joins the caller's trace.
type queued struct {
	ev   SecurityEvent
	span trace.SpanContext
}

// ErrClosed is returned when publishing on a closed Publisher.
var ErrClosed = errors.New("events: publisher closed")

// NewPublisher returns a Publisher that stamps events with source (the
// party's identity id) and stores them through sink. It panics on a nil sink
// or empty source, which are programming errors.
func NewPublisher(sink Sink, source string, opts PublisherOptions) *Publisher {
	if sink == nil || source == "" {
		panic("events: NewPublisher needs a sink and a source")
	}
	if opts.QueueSize <= 0 {
		opts.QueueSize = 4096
	}
	if opts.Workers <= 0 {
		opts.Workers = 4
	}
	if opts.Attempts <= 0 {
		opts.Attempts = 3
	}
	if opts.Timeout <= 0 {
		opts.Timeout = 5 * time.Second
	}
	p := &Publisher{sink: sink, source: source, opts: opts,
		queue: make(chan queued, opts.QueueSize)}
	for range opts.Workers {
		p.wg.Add(1)
		go p.work()
	}

	return p
}

// Publish queues ev for an asynchronous publish. An event that cannot be
// queued or persisted is counted in Lost and passed to OnLost, never
// dropped silently. The publish span is a child of ctx's span, so the
// event's trace context names the trace that raised it.
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
	select {
	case p.queue <- queued{ev: ev, span: trace.SpanContextFromContext(ctx)}:
	default:
		p.markLost(ev, errors.New("events: publish queue full"))
	}
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

// Close stops accepting events and waits, up to ctx's deadline, for queued
// events to be published. Events still queued when ctx ends count as lost.
func (p *Publisher) Close(ctx context.Context) error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil
	}
	p.closed = true
	close(p.queue)
	p.mu.Unlock()

	done := make(chan struct{})
	go func() { p.wg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("events: closing publisher with events queued: %w", ctx.Err())
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

func (p *Publisher) work() {
	defer p.wg.Done()
	for q := range p.queue {
		ev := q.ev
		// The caller's context may be cancelled by now, so only its span
		// travels: the publish span becomes a child of the Publish call's.
		ctx := trace.ContextWithSpanContext(context.Background(), q.span)
		var err error
		for attempt := range p.opts.Attempts {
			if attempt > 0 {
				time.Sleep(time.Duration(attempt) * 100 * time.Millisecond)
			}
			if err = p.send(ctx, ev); err == nil {
				break
			}
		}
		if err != nil {
			p.markLost(ev, err)
			continue
		}
		p.published.Add(1)
	}
}

func (p *Publisher) markLost(ev SecurityEvent, err error) {
	p.lost.Add(1)
	if p.opts.OnLost != nil {
		p.opts.OnLost(ev, err)
	}
}
