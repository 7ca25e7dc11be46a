package events

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/nodexsec/nodex/libs/testkit"
)

// jetStreamAsyncSink publishes plaintext JSON asynchronously to the real
// stream, with the event id as Nats-Msg-Id. When loseAcks is above zero,
// that many futures report a failure although the stream stored the
// message, as when an acknowledgement is lost on the way back.
type jetStreamAsyncSink struct {
	jetStreamSink
	loseAcks    atomic.Int32
	republished atomic.Int32
}

func (s *jetStreamAsyncSink) PublishAsync(_ context.Context, subject, _ string,
	body any) (jetstream.PubAckFuture, error) {
	b, err := json.Marshal(body)
	if err != nil {
		return nil, err
	}
	fut, err := s.js.PublishMsgAsync(&nats.Msg{Subject: subject, Data: b},
		jetstream.WithMsgID(body.(SecurityEvent).ID))
	if err != nil {
		return nil, err
	}
	if s.loseAcks.Add(-1) >= 0 {
		return lostAck{fut}, nil
	}

	return fut, nil
}

func (s *jetStreamAsyncSink) RepublishAsync(m *nats.Msg) (jetstream.PubAckFuture, error) {
	s.republished.Add(1)

	return s.js.PublishMsgAsync(m)
}

// lostAck reports a failure once the real publish is acknowledged or failed.
type lostAck struct{ jetstream.PubAckFuture }

func (l lostAck) Ok() <-chan *jetstream.PubAck { return nil }

func (l lostAck) Err() <-chan error {
	ch := make(chan error, 1)
	go func() {
		select {
		case <-l.PubAckFuture.Ok():
		case <-l.PubAckFuture.Err():
		}
		ch <- errors.New("acknowledgement lost")
	}()

	return ch
}

// blockingSink holds every publish until release is closed.
type blockingSink struct {
	entered chan struct{}
	release chan struct{}
	once    sync.Once
}

func newBlockingSink() *blockingSink {
	return &blockingSink{entered: make(chan struct{}), release: make(chan struct{})}
}

func (s *blockingSink) Publish(ctx context.Context, _, _ string, _ any) error {
	s.once.Do(func() { close(s.entered) })
	select {
	case <-s.release:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func streamMsgs(t *testing.T, s jetstream.Stream) uint64 {
	t.Helper()
	info, err := s.Info(context.Background())
	if err != nil {
		t.Fatal(err)
	}

	return info.State.Msgs
}

func TestFloodWaitsInsteadOfLosing(t *testing.T) {
	ctx := context.Background()
	js := testkit.JetStream(t, testkit.NATSServer(t))
	s, err := EnsureStream(ctx, js, StreamOptions{})
	if err != nil {
		t.Fatal(err)
	}
	// A queue far smaller than the flood: without the wait for room, most
	// events would be lost.
	p := NewPublisher(&jetStreamAsyncSink{jetStreamSink: jetStreamSink{js}}, "policy",
		PublisherOptions{QueueSize: 8, Workers: 2, MaxBatch: 4, EnqueueTimeout: 30 * time.Second})
	const flooders, each = 4, 500
	var wg sync.WaitGroup
	for range flooders {
		wg.Go(func() {
			for range each {
				p.Publish(ctx, SecurityEvent{Type: "policy.decision", Status: StatusSuccess,
					Severity: SeverityInfo})
			}
		})
	}
	wg.Wait()
	if err := p.Close(ctx); err != nil {
		t.Fatal(err)
	}
	const want = flooders * each
	if got := streamMsgs(t, s); got != want {
		t.Errorf("stream holds %d events, want %d", got, want)
	}
	if p.Published() != want {
		t.Errorf("Published() = %d, want %d", p.Published(), want)
	}
	if p.Lost() != 0 {
		t.Errorf("Lost() = %d, want 0", p.Lost())
	}
	if p.Pending() != 0 {
		t.Errorf("Pending() = %d after Close, want 0", p.Pending())
	}
}

func TestLostAckResendStoresOnce(t *testing.T) {
	ctx := context.Background()
	js := testkit.JetStream(t, testkit.NATSServer(t))
	s, err := EnsureStream(ctx, js, StreamOptions{})
	if err != nil {
		t.Fatal(err)
	}
	sink := &jetStreamAsyncSink{jetStreamSink: jetStreamSink{js}}
	sink.loseAcks.Store(1)
	p := NewPublisher(sink, "policy", PublisherOptions{})
	ev := validEvent()
	p.Publish(ctx, ev)
	if err := p.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if got := sink.republished.Load(); got != 1 {
		t.Errorf("republished %d times, want 1", got)
	}
	if got := streamMsgs(t, s); got != 1 {
		t.Errorf("stream holds %d events after a resend, want 1", got)
	}
	if p.Published() != 1 || p.Lost() != 0 {
		t.Errorf("published %d, lost %d; want 1, 0", p.Published(), p.Lost())
	}
}

func TestFullQueueLossIsCountedAndReported(t *testing.T) {
	ctx := context.Background()
	sink := newBlockingSink()
	var mu sync.Mutex
	reported := map[string]error{}
	p := NewPublisher(sink, "policy", PublisherOptions{
		QueueSize: 1, Workers: 1, EnqueueTimeout: 20 * time.Millisecond,
		OnLost: func(ev SecurityEvent, err error) {
			mu.Lock()
			defer mu.Unlock()
			reported[ev.ID] = err
		},
	})
	ids := []string{
		"00000000-0000-4000-8000-000000000001",
		"00000000-0000-4000-8000-000000000002",
		"00000000-0000-4000-8000-000000000003",
	}
	publish := func(id string) {
		ev := validEvent()
		ev.ID = id
		p.Publish(ctx, ev)
	}
	publish(ids[0])
	<-sink.entered  // the worker holds the first event
	publish(ids[1]) // fills the queue
	publish(ids[2]) // finds it full until the timeout
	if p.Lost() != 1 {
		t.Errorf("Lost() = %d, want 1", p.Lost())
	}
	mu.Lock()
	err := reported[ids[2]]
	mu.Unlock()
	if !errors.Is(err, ErrQueueFull) {
		t.Errorf("OnLost error for the third event = %v, want ErrQueueFull", err)
	}

	closeCtx, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	err = p.Close(closeCtx)
	if err == nil || !strings.Contains(err.Error(), "2 events pending") {
		t.Errorf("Close with a stuck sink = %v, want an error naming 2 pending events", err)
	}
	close(sink.release)
	deadline := time.Now().Add(10 * time.Second)
	for p.Pending() != 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if p.Published() != 2 || p.Lost() != 1 || p.Pending() != 0 {
		t.Errorf("published %d, lost %d, pending %d; want 2, 1, 0", p.Published(), p.Lost(),
			p.Pending())
	}
}

func TestCloseEndsLinger(t *testing.T) {
	ctx := context.Background()
	js := testkit.JetStream(t, testkit.NATSServer(t))
	s, err := EnsureStream(ctx, js, StreamOptions{})
	if err != nil {
		t.Fatal(err)
	}
	// With an hour of linger, the events can only reach the stream before
	// the test deadline if Close cuts the wait short.
	p := NewPublisher(&jetStreamAsyncSink{jetStreamSink: jetStreamSink{js}}, "policy",
		PublisherOptions{Linger: time.Hour})
	for range 10 {
		p.Publish(ctx, SecurityEvent{Type: "policy.decision", Status: StatusSuccess,
			Severity: SeverityInfo})
	}
	closeCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := p.Close(closeCtx); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if got := streamMsgs(t, s); got != 10 {
		t.Errorf("stream holds %d events, want 10", got)
	}
	if p.Published() != 10 || p.Lost() != 0 {
		t.Errorf("published %d, lost %d; want 10, 0", p.Published(), p.Lost())
	}
}
