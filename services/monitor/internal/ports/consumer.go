package ports

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/nodexsec/nodex/libs/events"
	"github.com/nodexsec/nodex/libs/logx"
	"github.com/nodexsec/nodex/libs/telemetry"
	"github.com/nodexsec/nodex/services/monitor/internal/app"
	"github.com/nodexsec/nodex/services/monitor/internal/domain"
)

// ConsumerName is the durable consumer of the monitor on NODEX_EVENTS.
const ConsumerName = "monitor-detect"

// ConsumerOptions tune a [Consumer]. Zero fields take defaults.
type ConsumerOptions struct {
	// AckWait is how long JetStream waits for an ack before redelivering;
	// default 30 s.
	AckWait time.Duration
	// MaxAckPending bounds unacknowledged messages; default 4,096.
	MaxAckPending int
	// NakDelay is the redelivery delay after a transient failure; default 1 s.
	NakDelay time.Duration
	// Openers is how many messages are opened at once; default
	// runtime.GOMAXPROCS(0). Opening (signature check and decryption)
	// dominates the cost of an event, and the rules still see events in
	// stream order.
	Openers int
	// DrainTimeout bounds how long messages in flight when Run's context
	// ends may take to finish; default 10 s. Unfinished ones are redelivered.
	DrainTimeout time.Duration
	// Ready, if set, is called once the windows are rebuilt and the
	// consumer is bound.
	Ready func()
	// FlushInterval is how often held-back shed counts and threat
	// revisions are checked for publishing; default 1 s.
	FlushInterval time.Duration
}

// Consumer feeds the durable consumer's messages to a detector and acks
// each one after the detector finished with it.
type Consumer struct {
	log  *slog.Logger
	js   jetstream.JetStream
	det  *app.Detector
	opts ConsumerOptions
}

// NewConsumer returns a consumer; it panics on a nil dependency.
func NewConsumer(log *slog.Logger, js jetstream.JetStream, det *app.Detector,
	opts ConsumerOptions) *Consumer {
	if log == nil || js == nil || det == nil {
		panic("ports: NewConsumer with a nil dependency")
	}
	if opts.AckWait <= 0 {
		opts.AckWait = 30 * time.Second
	}
	if opts.MaxAckPending <= 0 {
		opts.MaxAckPending = 4096
	}
	if opts.NakDelay <= 0 {
		opts.NakDelay = time.Second
	}
	if opts.DrainTimeout <= 0 {
		opts.DrainTimeout = 10 * time.Second
	}
	if opts.Openers <= 0 {
		opts.Openers = runtime.GOMAXPROCS(0)
	}
	if opts.FlushInterval <= 0 {
		opts.FlushInterval = time.Second
	}

	return &Consumer{log: log.With(logx.KeyComponent, "consumer"), js: js, det: det, opts: opts}
}

// Run binds the durable consumer and processes messages until ctx ends.
// Messages in flight when ctx ends are not acked and are redelivered to
// the next run.
func (c *Consumer) Run(ctx context.Context) error {
	warmed, err := c.WarmUp(ctx)
	if err != nil {
		// Detection still works; only attacks spanning the restart may be
		// counted short.
		c.log.WarnContext(ctx, "rebuilding windows from history", logx.Err(err))
	}
	c.log.InfoContext(ctx, "windows rebuilt", "events", warmed)

	cons, err := c.js.CreateOrUpdateConsumer(ctx, events.StreamName, jetstream.ConsumerConfig{
		Durable:       ConsumerName,
		Description:   "monitor threat detection",
		AckPolicy:     jetstream.AckExplicitPolicy,
		DeliverPolicy: jetstream.DeliverAllPolicy,
		AckWait:       c.opts.AckWait,
		MaxAckPending: c.opts.MaxAckPending,
		FilterSubject: events.SubjectPrefix + ">",
	})
	if err != nil {
		return fmt.Errorf("binding consumer %s on %s: %w", ConsumerName, events.StreamName, err)
	}
	it, err := cons.Messages(jetstream.PullMaxMessages(512))
	if err != nil {
		return fmt.Errorf("pulling from consumer %s: %w", ConsumerName, err)
	}
	c.log.InfoContext(ctx, "consumer bound", logx.KeyStream, events.StreamName,
		logx.KeyConsumer, ConsumerName)
	if c.opts.Ready != nil {
		c.opts.Ready()
	}

	done := make(chan struct{})
	defer close(done)
	go c.stopOnCancel(ctx, it, done)

	// Messages already pulled finish after ctx ends, within DrainTimeout,
	// so the threats they raise are stored before their acks.
	procCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	defer cancel()
	stopDrain := context.AfterFunc(ctx, func() {
		time.AfterFunc(c.opts.DrainTimeout, cancel)
	})
	defer stopDrain()

	return c.pipeline(procCtx, ctx, it)
}

// job is one message on its way through the pipeline. opening is set and
// opened closed by an opener; a shed message has a nil opening and a closed
// opened from the start.
type job struct {
	m       jetstream.Msg
	msg     *app.Message
	opening *app.Opening
	opened  chan struct{}
	// span covers the message from its pull to its ack. It is a child of
	// the publish span whose trace context the message headers carry.
	span trace.Span
}

// tracerName names the tracer of the monitor's processing spans.
const tracerName = "nodex/monitor"

// startSpan starts the processing span of m as a child of the span that
// published it. The trace context is for operators only: a publisher
// chooses it, so nothing the monitor decides reads it.
func startSpan(m jetstream.Msg, msg *app.Message) trace.Span {
	parent := telemetry.Extract(context.Background(), m.Headers())
	_, span := otel.Tracer(tracerName).Start(parent, "monitor.process_event",
		trace.WithSpanKind(trace.SpanKindConsumer),
		trace.WithAttributes(
			attribute.String("messaging.system", "nats"),
			attribute.String("messaging.destination.name", msg.Subject),
			attribute.String("messaging.message.id", msg.MsgID),
			attribute.Int64("nodex.stream_sequence", int64(msg.Sequence)),
			attribute.Int64("nodex.delivered", int64(msg.Delivered)),
		))

	return span
}

// pipeline pulls messages in stream order, admits them, opens admitted ones
// on Openers goroutines and finishes them in stream order again.
// ctx governs processing and pullCtx only the logging of pull errors.
func (c *Consumer) pipeline(ctx, pullCtx context.Context, it jetstream.MessagesContext) error {
	work := make(chan *job, 2*c.opts.Openers)
	ordered := make(chan *job, 4*c.opts.Openers)

	var openers sync.WaitGroup
	for range c.opts.Openers {
		openers.Go(func() {
			for j := range work {
				j.opening = c.det.Open(trace.ContextWithSpan(ctx, j.span), j.msg)
				close(j.opened)
			}
		})
	}
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		for j := range ordered {
			<-j.opened
			c.finish(ctx, j)
		}
	}()

	c.pull(pullCtx, it, work, ordered)
	close(work)
	close(ordered)
	openers.Wait()
	<-finished

	return nil
}

// pull reads messages until the iterator closes and queues each one.
func (c *Consumer) pull(ctx context.Context, it jetstream.MessagesContext,
	work, ordered chan<- *job) {
	for {
		m, err := it.Next()
		if errors.Is(err, jetstream.ErrMsgIteratorClosed) {
			return
		}
		if err != nil {
			c.log.WarnContext(ctx, "pulling message", logx.Err(err))
			continue
		}
		msg, err := toMessage(m)
		if err != nil {
			c.log.ErrorContext(ctx, "reading message metadata", logx.KeySubject,
				domain.Escape(m.Subject()), logx.Err(err), logx.KeyUnexpected, true)
			_ = m.Term()
			continue
		}

		j := &job{m: m, msg: msg, opened: make(chan struct{}), span: startSpan(m, msg)}
		ordered <- j
		if c.det.Admit(msg) {
			work <- j
		} else {
			j.span.SetAttributes(attribute.Bool("nodex.shed", true))
			close(j.opened)
		}
	}
}

func toMessage(m jetstream.Msg) (*app.Message, error) {
	md, err := m.Metadata()
	if err != nil {
		return nil, err
	}

	return &app.Message{
		Subject: m.Subject(), Data: m.Data(), Header: m.Headers(),
		Stream: md.Stream, Sequence: md.Sequence.Stream,
		MsgID:  m.Headers().Get(jetstream.MsgIDHeader),
		Stored: md.Timestamp, Delivered: md.NumDelivered,
	}, nil
}

// maxWarmEvents bounds the history WarmUp reads, so a restart of a busy
// monitor does not spend minutes rebuilding windows.
const maxWarmEvents = 200_000

// WarmUp rebuilds the detector's windows from the events the durable
// consumer already acknowledged within the rules' longest window, so an
// attack that spans a restart is still counted. It reads nothing on the
// first start and returns how many events it used.
//
// NOTE: it reads at most 200,000 events, from the oldest in the span, and
// an event acked out of order above the ack floor is not included.
func (c *Consumer) WarmUp(ctx context.Context) (int, error) {
	cons, err := c.js.Consumer(ctx, events.StreamName, ConsumerName)
	if errors.Is(err, jetstream.ErrConsumerNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("looking up consumer %s: %w", ConsumerName, err)
	}
	info, err := cons.Info(ctx)
	if err != nil {
		return 0, fmt.Errorf("reading consumer %s: %w", ConsumerName, err)
	}
	floor := info.AckFloor.Stream
	span := c.det.WarmSpan()
	if floor == 0 || span <= 0 {
		return 0, nil
	}

	since := time.Now().Add(-span)
	history, err := c.js.OrderedConsumer(ctx, events.StreamName, jetstream.OrderedConsumerConfig{
		DeliverPolicy: jetstream.DeliverByStartTimePolicy, OptStartTime: &since,
	})
	if err != nil {
		return 0, fmt.Errorf("reading event history: %w", err)
	}

	return c.warmFrom(ctx, history, floor)
}

// warmFrom feeds messages up to stream sequence floor to the detector.
func (c *Consumer) warmFrom(ctx context.Context, history jetstream.Consumer,
	floor uint64) (int, error) {
	used := 0
	for read := 0; read < maxWarmEvents; {
		batch, err := history.Fetch(512, jetstream.FetchMaxWait(time.Second))
		if err != nil {
			return used, fmt.Errorf("reading event history: %w", err)
		}
		n := 0
		for m := range batch.Messages() {
			n++
			msg, err := toMessage(m)
			if err != nil || msg.Sequence > floor {
				return used, nil
			}
			if c.det.Warm(ctx, msg) {
				used++
			}
		}
		if n == 0 {
			return used, nil
		}
		read += n
	}

	return used, nil
}

// stopOnCancel stops the iterator when ctx ends and reports pending shed
// counts every FlushInterval meanwhile.
func (c *Consumer) stopOnCancel(ctx context.Context, it jetstream.MessagesContext,
	done <-chan struct{}) {
	tick := time.NewTicker(c.opts.FlushInterval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			it.Stop()
			return
		case <-done:
			return
		case now := <-tick.C:
			if err := c.det.Flush(ctx, now); err != nil {
				c.log.WarnContext(ctx, "reporting shed events", logx.Err(err))
			}
		}
	}
}

// finish hands an opened or shed message to the detector and acks it, or
// naks it for redelivery when the detector could not finish it.
func (c *Consumer) finish(ctx context.Context, j *job) {
	defer j.span.End()
	ctx = trace.ContextWithSpan(ctx, j.span)
	msg := j.msg
	if err := c.det.Finish(ctx, msg, j.opening); err != nil {
		j.span.SetStatus(codes.Error, "processing failed, message naked")
		c.log.WarnContext(ctx, "processing event, will retry", logx.KeySubject,
			domain.Escape(msg.Subject), "stream_seq", msg.Sequence,
			logx.KeyAttempt, msg.Delivered, logx.Err(err))
		if err := j.m.NakWithDelay(c.opts.NakDelay); err != nil {
			c.log.WarnContext(ctx, "naking message", "stream_seq", msg.Sequence, logx.Err(err))
		}
		return
	}
	if err := j.m.Ack(); err != nil {
		c.log.WarnContext(ctx, "acking message", "stream_seq", msg.Sequence, logx.Err(err))
	}
}
