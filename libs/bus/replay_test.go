package bus

import (
	"context"
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/nodexsec/nodex/libs/envelope"
	"github.com/nodexsec/nodex/libs/envelope/envtest"
	"github.com/nodexsec/nodex/libs/testkit"
)

// startServer starts an embedded JetStream server on port (-1 for a random
// one) storing under dir, so a test can restart it on the same address.
func startServer(t *testing.T, dir string, port int) *server.Server {
	t.Helper()
	srv, err := server.NewServer(&server.Options{ServerName: "bus-test", Host: "127.0.0.1",
		Port: port, JetStream: true, StoreDir: dir, NoLog: true, NoSigs: true, SyncAlways: true})
	if err != nil {
		t.Fatalf("creating nats-server: %v", err)
	}
	go srv.Start()
	if !srv.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats-server not ready after 10s")
	}
	t.Cleanup(srv.Shutdown)

	return srv
}

// rejections collects OnReject reports of one codec.
type rejections struct {
	mu  sync.Mutex
	got []error
	ch  chan error
}

func newRejections() *rejections { return &rejections{ch: make(chan error, 16)} }

func (r *rejections) hook(rej envelope.Rejection) {
	r.mu.Lock()
	r.got = append(r.got, rej.Reason)
	r.mu.Unlock()
	r.ch <- rej.Reason
}

func (r *rejections) wait(t *testing.T, want error) {
	t.Helper()
	select {
	case got := <-r.ch:
		if !errors.Is(got, want) {
			t.Errorf("rejected with %v, want %v", got, want)
		}
	case <-time.After(5 * time.Second):
		t.Errorf("no rejection within 5s, want %v", want)
	}
}

// client connects p with a codec reporting to rej and reconnecting forever.
func client(t *testing.T, url string, p *envtest.Party, rej *rejections) *Client {
	t.Helper()
	nc, err := nats.Connect(url, nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond))
	if err != nil {
		t.Fatalf("connecting: %v", err)
	}
	t.Cleanup(nc.Close)
	codec := p.Codec(t, func(c *envelope.Config) {
		if rej != nil {
			c.OnReject = rej.hook
		}
	})
	c, err := New(Config{Conn: nc, Codec: codec})
	if err != nil {
		t.Fatal(err)
	}

	return c
}

// TestReplayAcrossReplicasAndRestarts captures a request on the wire and
// replays it to a second replica, to a restarted replica, and after the
// whole server restarted. The handler records its effect with the request
// id in a create-only KV write, so only the first delivery has an effect.
func TestReplayAcrossReplicasAndRestarts(t *testing.T) {
	dir := t.TempDir()
	srv := startServer(t, dir, -1)
	url := srv.ClientURL()
	port := srv.Addr().(*net.TCPAddr).Port
	ctx := context.Background()
	ws, err := NewWrapStore(ctx, testkit.JetStream(t, srv), 0)
	if err != nil {
		t.Fatal(err)
	}
	w := envtest.NewWorld(ws)
	svc := w.AddParty(t, "codesec-1", "service", "service:codesec")
	agent := client(t, url, w.AddParty(t, "agent-1", "agent", "agent"), nil)
	kv, err := EnsureKV(ctx, agent.JetStream(), jetstream.KeyValueConfig{Bucket: "CODESEC_EFFECTS",
		TTL: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	var effects atomic.Int32
	handled := make(chan bool, 8)
	handler := func(ctx context.Context, r *Request) (any, error) {
		isNew, err := RecordOnce(ctx, kv, "submit."+r.ID(), r.Body)
		if err != nil {
			return nil, err
		}
		if isNew {
			effects.Add(1)
		}
		handled <- isNew
		return echo{Text: "ok"}, nil
	}
	const subject = "nodex.v1.codesec.submit"

	// The hostile server's view: a copy of every request.
	sniffer := testkit.Connect(t, srv)
	captured := make(chan *nats.Msg, 1)
	sub, _ := sniffer.Subscribe(subject, func(m *nats.Msg) { captured <- m })
	_ = sniffer.Flush()

	repA := client(t, url, svc, nil)
	rejB := newRejections()
	repB := client(t, url, svc, rejB) // started before the request is sent
	if err := repA.Handle(subject, "codesec", handler); err != nil {
		t.Fatal(err)
	}
	if err := agent.Request(ctx, subject, "service:codesec", echo{Text: "x"}, nil); err != nil {
		t.Fatalf("request: %v", err)
	}
	<-handled
	m := <-captured
	_ = sub.Unsubscribe()
	if err := repA.Drain(ctx); err != nil {
		t.Fatal(err)
	}
	if err := repB.Handle(subject, "codesec", handler); err != nil {
		t.Fatal(err)
	}
	_ = repB.NATS().Flush()
	replay := func() {
		t.Helper()
		if err := sniffer.PublishMsg(&nats.Msg{Subject: m.Subject, Reply: m.Reply, Data: m.Data,
			Header: m.Header}); err != nil {
			t.Fatal(err)
		}
	}

	// Other replica: its replay cache never saw the id, the KV record has.
	replay()
	select {
	case isNew := <-handled:
		if isNew {
			t.Error("replica B treated the replay as new")
		}
	case reason := <-rejB.ch:
		t.Fatalf("replica B rejected the replay (%v): the KV record was never consulted", reason)
	case <-time.After(5 * time.Second):
		t.Fatal("replica B did not handle the replay within 5s")
	}

	// Same replica again: its local replay cache rejects it.
	replay()
	rejB.wait(t, envelope.ErrReplay)

	// Restarted replica: the request predates its start.
	if err := repB.Drain(ctx); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * time.Millisecond)
	rejC := newRejections()
	repC := client(t, url, svc, rejC)
	if err := repC.Handle(subject, "codesec", handler); err != nil {
		t.Fatal(err)
	}
	_ = repC.NATS().Flush()
	replay()
	rejC.wait(t, envelope.ErrNotFresh)

	// Whole server restarted on the same port and storage.
	srv.Shutdown()
	srv.WaitForShutdown()
	srv2 := startServer(t, dir, port)
	waitReconnected(t, repC.NATS())
	sniffer2 := testkit.Connect(t, srv2)
	if err := sniffer2.PublishMsg(&nats.Msg{Subject: m.Subject, Reply: m.Reply, Data: m.Data}); err != nil {
		t.Fatal(err)
	}
	rejC.wait(t, envelope.ErrNotFresh)
	if n := effects.Load(); n != 1 {
		t.Errorf("effects = %d, want 1", n)
	}
}

func waitReconnected(t *testing.T, nc *nats.Conn) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !nc.IsConnected() || nc.Flush() != nil {
		if time.Now().After(deadline) {
			t.Fatal("client did not reconnect within 10s")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// counter counts distinct (sender, id) pairs and raw deliveries.
type counter struct {
	mu         sync.Mutex
	distinct   map[string]bool
	deliveries int
}

func (c *counter) add(m *Message) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.distinct[m.Sender+"/"+m.ID] = true
	c.deliveries++
}

func (c *counter) waitDistinct(t *testing.T, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		c.mu.Lock()
		got := len(c.distinct)
		c.mu.Unlock()
		if got >= n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d distinct messages opened within 10s, want %d", got, n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestStreamRedeliveryAndLateReaders checks that stream messages open on
// redelivery after a nak, for two durable consumers, for a consumer
// restarted more than the window later, and for a new consumer reading
// from the first sequence, and that each is counted once.
func TestStreamRedeliveryAndLateReaders(t *testing.T) {
	srv := testkit.NATSServer(t)
	ctx := context.Background()
	ws, err := NewWrapStore(ctx, testkit.JetStream(t, srv), 0)
	if err != nil {
		t.Fatal(err)
	}
	w := envtest.NewWorld(ws)
	pub := client(t, srv.ClientURL(), w.AddParty(t, "keyvault-1", "service", "service:keyvault"), nil)
	mon := w.AddParty(t, "monitor-1", "service", "service:monitor")
	inc := w.AddParty(t, "incident-1", "service", "service:monitor")
	if _, err := EnsureStream(ctx, pub.JetStream(), jetstream.StreamConfig{Name: "NODEX_EVENTS",
		Subjects: []string{"nodex.v1.events.>"}}); err != nil {
		t.Fatal(err)
	}
	publish := func(n int) {
		for range n {
			if err := pub.Publish(ctx, "nodex.v1.events.keyvault.key_read", "service:monitor",
				echo{Text: "e"}); err != nil {
				t.Fatal(err)
			}
		}
	}
	consume := func(c *Client, durable string, count *counter, nakFirst bool,
		policy jetstream.DeliverPolicy) {
		var nakked atomic.Bool
		err := c.Consume(ctx, ConsumeConfig{Stream: "NODEX_EVENTS", NakDelay: 10 * time.Millisecond,
			Consumer: jetstream.ConsumerConfig{Durable: durable, DeliverPolicy: policy}},
			func(_ context.Context, m *Message) error {
				if nakFirst && nakked.CompareAndSwap(false, true) {
					return errors.New("transient")
				}
				count.add(m)
				return nil
			})
		if err != nil {
			t.Fatal(err)
		}
	}
	publish(3)

	monCount := &counter{distinct: map[string]bool{}}
	monClient := client(t, srv.ClientURL(), mon, nil)
	consume(monClient, "monitor-events", monCount, true, jetstream.DeliverAllPolicy)
	incCount := &counter{distinct: map[string]bool{}}
	consume(client(t, srv.ClientURL(), inc, nil), "incident-events", incCount, false,
		jetstream.DeliverAllPolicy)
	monCount.waitDistinct(t, 3)
	incCount.waitDistinct(t, 3)

	// The monitor stops, two more events arrive, and it restarts with a
	// clock far past the window: stream freshness uses the stream time.
	if err := monClient.Drain(ctx); err != nil {
		t.Fatal(err)
	}
	publish(2)
	late := func(c *envelope.Config) { c.Now = func() time.Time { return time.Now().Add(time.Hour) } }
	lateClient := func(p *envtest.Party) *Client {
		nc := testkit.Connect(t, srv)
		c, err := New(Config{Conn: nc, Codec: p.Codec(t, late)})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = c.Drain(ctx) })
		return c
	}
	consume(lateClient(mon), "monitor-events", monCount, false, jetstream.DeliverAllPolicy)
	monCount.waitDistinct(t, 5)

	// A new consumer reads everything from the first sequence.
	replayCount := &counter{distinct: map[string]bool{}}
	consume(lateClient(mon), "monitor-replay", replayCount, false, jetstream.DeliverAllPolicy)
	replayCount.waitDistinct(t, 5)
	incCount.waitDistinct(t, 5)

	time.Sleep(100 * time.Millisecond) // let any extra delivery arrive
	for name, c := range map[string]*counter{"monitor": monCount, "incident": incCount,
		"replay": replayCount} {
		c.mu.Lock()
		if len(c.distinct) != 5 || c.deliveries != 5 {
			t.Errorf("%s: %d distinct, %d handled, want 5 and 5", name, len(c.distinct),
				c.deliveries)
		}
		c.mu.Unlock()
	}
}
