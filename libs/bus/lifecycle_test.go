package bus

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/nodexsec/nodex/libs/envelope"
	"github.com/nodexsec/nodex/libs/testkit"
)

func TestDrainFinishesInflightRequest(t *testing.T) {
	srv := testkit.NATSServer(t)
	w := newWorld(t, srv)
	svc := newClient(t, srv, w.AddParty(t, "sandbox-1", "service", "service:sandbox"), nil)
	agent := newClient(t, srv, w.AddParty(t, "agent-1", "agent", "agent"), nil)
	started := make(chan struct{})
	release := make(chan struct{})
	if err := svc.Handle("nodex.v1.sandbox.exec", "sandbox", func(context.Context,
		*Request) (any, error) {
		close(started)
		<-release
		return echo{Text: "done"}, nil
	}); err != nil {
		t.Fatal(err)
	}
	var (
		out    echo
		reqErr error
		wg     sync.WaitGroup
	)
	wg.Go(func() {
		reqErr = agent.Request(context.Background(), "nodex.v1.sandbox.exec", "service:sandbox",
			echo{}, &out)
	})
	<-started
	drained := make(chan error, 1)
	go func() { drained <- svc.Drain(context.Background()) }()

	select {
	case err := <-drained:
		t.Fatalf("Drain returned %v while a handler was running", err)
	case <-time.After(100 * time.Millisecond):
	}
	close(release)
	if err := <-drained; err != nil {
		t.Errorf("Drain: %v", err)
	}
	wg.Wait()
	if reqErr != nil || out.Text != "done" {
		t.Errorf("in-flight request got %q, %v; want its reply", out.Text, reqErr)
	}
	err := svc.Handle("nodex.v1.sandbox.other", "", func(context.Context, *Request) (any, error) {
		return nil, nil
	})
	if !errors.Is(err, ErrDraining) {
		t.Errorf("Handle after Drain: got %v, want ErrDraining", err)
	}
}

func TestConsumeTerminatesExpiredJob(t *testing.T) {
	srv := testkit.NATSServer(t)
	w := newWorld(t, srv)
	ctx := context.Background()
	var (
		mu       sync.Mutex
		failures []string
	)
	codesec := newClient(t, srv, w.AddParty(t, "codesec-1", "service", "service:codesec"), nil)
	runner := newClient(t, srv, w.AddParty(t, "sandbox-1", "service", "service:sandbox"),
		func(c *Config) {
			c.OnError = func(_ context.Context, _ string, err error) {
				mu.Lock()
				failures = append(failures, err.Error())
				mu.Unlock()
			}
		})
	if _, err := EnsureStream(ctx, codesec.JetStream(), jetstream.StreamConfig{
		Name: "SANDBOX_JOBS", Subjects: []string{"nodex.v1.sandbox.jobs.>"},
		Retention: jetstream.WorkQueuePolicy}); err != nil {
		t.Fatal(err)
	}
	if _, err := codesec.PublishJob(ctx, "nodex.v1.sandbox.jobs.run", "service:sandbox",
		echo{Text: "expired"}, time.Now().Add(-time.Second)); err != nil {
		t.Fatal(err)
	}
	if _, err := codesec.PublishJob(ctx, "nodex.v1.sandbox.jobs.run", "service:sandbox",
		echo{Text: "live"}, time.Now().Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	got := make(chan string, 2)
	err := runner.Consume(ctx, ConsumeConfig{Stream: "SANDBOX_JOBS",
		Consumer: jetstream.ConsumerConfig{Durable: "sandbox-jobs"}},
		func(_ context.Context, m *Message) error {
			var e echo
			if err := m.Decode(&e); err != nil {
				return err
			}
			got <- e.Text
			return nil
		})
	if err != nil {
		t.Fatal(err)
	}

	select {
	case text := <-got:
		if text != "live" {
			t.Errorf("handled job %q, want only the live one", text)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("live job not handled within 5s")
	}
	mu.Lock()
	defer mu.Unlock()
	if len(failures) != 1 || !strings.Contains(failures[0], "term") {
		t.Errorf("OnError got %q, want one terminated expired job", failures)
	}
}

func TestEnsureObjectStore(t *testing.T) {
	srv := testkit.NATSServer(t)
	js := testkit.JetStream(t, srv)
	ctx := context.Background()
	for range 2 { // the second call finds it and keeps working
		os, err := EnsureObjectStore(ctx, js, jetstream.ObjectStoreConfig{Bucket: "CODESEC_BUNDLES"})
		if err != nil {
			t.Fatalf("ensuring object store: %v", err)
		}
		if os == nil {
			t.Fatal("nil object store")
		}
	}
	if _, err := js.ObjectStore(ctx, "CODESEC_BUNDLES"); err != nil {
		t.Errorf("object store missing after EnsureObjectStore: %v", err)
	}
}

// TestConsumeBoundsMissingWrapRetries publishes an event whose wrap is in
// a store the consumer cannot see: it is naked, then terminated after
// MaxOpenAttempts deliveries instead of cycling forever.
func TestConsumeBoundsMissingWrapRetries(t *testing.T) {
	srv := testkit.NATSServer(t)
	w := newWorld(t, srv)
	ctx := context.Background()
	sender := w.AddParty(t, "keyvault-1", "service", "service:keyvault")
	reader := w.AddParty(t, "monitor-1", "service", "service:monitor")
	// The sender writes its wraps to a private in-memory store.
	nc := testkit.Connect(t, srv)
	pub, err := New(Config{Conn: nc, Codec: sender.Codec(t, func(c *envelope.Config) {
		c.Wraps = envelope.NewMemoryWraps()
	})})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := EnsureStream(ctx, pub.JetStream(), jetstream.StreamConfig{Name: "NODEX_EVENTS",
		Subjects: []string{"nodex.v1.events.>"}}); err != nil {
		t.Fatal(err)
	}
	if err := pub.Publish(ctx, "nodex.v1.events.keyvault.x", "service:monitor", echo{}); err != nil {
		t.Fatal(err)
	}
	reports := make(chan string, 8)
	mon := newClient(t, srv, reader, func(c *Config) {
		c.OnError = func(_ context.Context, _ string, err error) { reports <- err.Error() }
	})
	err = mon.Consume(ctx, ConsumeConfig{Stream: "NODEX_EVENTS", NakDelay: 10 * time.Millisecond,
		MaxOpenAttempts: 3, Consumer: jetstream.ConsumerConfig{Durable: "monitor-events"}},
		func(context.Context, *Message) error { return nil })
	if err != nil {
		t.Fatal(err)
	}

	var got []string
	for len(got) < 3 {
		select {
		case r := <-reports:
			got = append(got, r)
		case <-time.After(5 * time.Second):
			t.Fatalf("got %d reports within 5s, want 3: %q", len(got), got)
		}
	}
	for i, prefix := range []string{"nak", "nak", "term"} {
		if !strings.HasPrefix(got[i], prefix) {
			t.Errorf("report %d = %q, want prefix %q", i, got[i], prefix)
		}
	}
	select {
	case r := <-reports:
		t.Errorf("delivered again after termination: %q", r)
	case <-time.After(100 * time.Millisecond):
	}
}

// TestHandleRunsRequestsConcurrently holds one request in its handler and
// checks that a second request on the same subject is answered meanwhile.
func TestHandleRunsRequestsConcurrently(t *testing.T) {
	srv := testkit.NATSServer(t)
	w := newWorld(t, srv)
	svc := newClient(t, srv, w.AddParty(t, "sandbox-1", "service", "service:sandbox"), nil)
	agent := newClient(t, srv, w.AddParty(t, "agent-1", "agent", "agent"), nil)

	release := make(chan struct{})
	entered := make(chan struct{}, 1)
	err := svc.Handle("nodex.v1.sandbox.exec", "sandbox", func(_ context.Context, r *Request) (any, error) {
		var in echo
		if err := r.Decode(&in); err != nil {
			return nil, err
		}
		if in.Text == "slow" {
			entered <- struct{}{}
			<-release
		}
		return in, nil
	})
	if err != nil {
		t.Fatal(err)
	}

	slowDone := make(chan error, 1)
	go func() {
		slowDone <- agent.Request(context.Background(), "nodex.v1.sandbox.exec", "service:sandbox",
			echo{Text: "slow"}, nil)
	}()
	<-entered
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	var got echo
	if err := agent.Request(ctx, "nodex.v1.sandbox.exec", "service:sandbox", echo{Text: "fast"}, &got); err != nil {
		t.Fatalf("second request while the first is held: %v", err)
	}
	close(release)
	if err := <-slowDone; err != nil {
		t.Fatalf("held request: %v", err)
	}
}
