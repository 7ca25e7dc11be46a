package bus

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/trace"

	"github.com/nodexsec/nodex/libs/envelope/envtest"
	"github.com/nodexsec/nodex/libs/errs"
	"github.com/nodexsec/nodex/libs/testkit"
)

// newWorld returns a registry whose wraps live in the server's KV bucket.
func newWorld(t *testing.T, srv *server.Server) *envtest.World {
	t.Helper()
	ws, err := NewWrapStore(context.Background(), testkit.JetStream(t, srv), 0)
	if err != nil {
		t.Fatalf("creating wrap store: %v", err)
	}

	return envtest.NewWorld(ws)
}

// newClient connects p to srv with its own codec.
func newClient(t *testing.T, srv *server.Server, p *envtest.Party, mutate func(*Config)) *Client {
	t.Helper()
	cfg := Config{Conn: testkit.Connect(t, srv), Codec: p.Codec(t, nil)}
	if mutate != nil {
		mutate(&cfg)
	}
	c, err := New(cfg)
	if err != nil {
		t.Fatalf("creating client for %s: %v", p.ID, err)
	}
	t.Cleanup(func() { _ = c.Drain(context.Background()) })

	return c
}

type echo struct {
	Text string `json:"text"`
}

func TestRequestReply(t *testing.T) {
	srv := testkit.NATSServer(t)
	w := newWorld(t, srv)
	svc := newClient(t, srv, w.AddParty(t, "codesec-1", "service", "service:codesec"), nil)
	agent := newClient(t, srv, w.AddParty(t, "agent-1", "agent", "agent"), nil)

	var gotSender string
	err := svc.Handle("nodex.v1.codesec.echo", "codesec", func(ctx context.Context,
		r *Request) (any, error) {
		var in echo
		if err := r.Decode(&in); err != nil {
			return nil, errs.InvalidRequest
		}
		gotSender = r.Sender
		return echo{Text: in.Text + "!"}, nil
	})
	if err != nil {
		t.Fatalf("handling: %v", err)
	}

	var out echo
	err = agent.Request(context.Background(), "nodex.v1.codesec.echo", "service:codesec",
		echo{Text: "hi"}, &out)
	if err != nil {
		t.Fatalf("request: %v", err)
	}
	if out.Text != "hi!" {
		t.Errorf("reply text = %q, want %q", out.Text, "hi!")
	}
	if gotSender != "agent-1" {
		t.Errorf("handler saw sender %q, want agent-1", gotSender)
	}
}

func TestRequestCodedError(t *testing.T) {
	srv := testkit.NATSServer(t)
	w := newWorld(t, srv)
	var handlerErr error
	svc := newClient(t, srv, w.AddParty(t, "keyvault-1", "service", "service:keyvault"),
		func(c *Config) {
			c.OnError = func(_ context.Context, _ string, err error) { handlerErr = err }
		})
	agent := newClient(t, srv, w.AddParty(t, "agent-1", "agent", "agent"), nil)
	calls := 0
	if err := svc.Handle("nodex.v1.keyvault.retrieve", "keyvault", func(context.Context,
		*Request) (any, error) {
		calls++
		if calls == 1 {
			return nil, errs.NotFound.Withf("key %q not found", "openai")
		}
		return nil, errors.New("disk on fire: secret=abc")
	}); err != nil {
		t.Fatalf("handling: %v", err)
	}
	ctx := context.Background()

	err := agent.Request(ctx, "nodex.v1.keyvault.retrieve", "service:keyvault", echo{}, nil)
	if !errors.Is(err, errs.NotFound) {
		t.Fatalf("got %v, want errs.NotFound", err)
	}

	err = agent.Request(ctx, "nodex.v1.keyvault.retrieve", "service:keyvault", echo{}, nil)
	var coded *errs.Error
	if !errors.As(err, &coded) || coded.Code != errs.Internal.Code {
		t.Fatalf("got %v, want errs.Internal", err)
	}
	if coded.Description != errs.Internal.Description {
		t.Errorf("internal reply leaked detail: %q", coded.Description)
	}
	if handlerErr == nil {
		t.Error("OnError did not receive the handler's cause")
	}
}

func TestRequestRateLimited(t *testing.T) {
	srv := testkit.NATSServer(t)
	w := newWorld(t, srv)
	now := time.Now()
	svc := newClient(t, srv, w.AddParty(t, "policy-1", "service", "service:policy"),
		func(c *Config) {
			c.RequestsPerSecond, c.RequestBurst = 1, 2
			c.Now = func() time.Time { return now }
		})
	a1 := newClient(t, srv, w.AddParty(t, "agent-1", "agent", "agent"), nil)
	a2 := newClient(t, srv, w.AddParty(t, "agent-2", "agent", "agent"), nil)
	if err := svc.Handle("nodex.v1.policy.decide", "policy", func(context.Context,
		*Request) (any, error) {
		return echo{Text: "ok"}, nil
	}); err != nil {
		t.Fatalf("handling: %v", err)
	}
	ctx := context.Background()
	for i := range 2 {
		if err := a1.Request(ctx, "nodex.v1.policy.decide", "service:policy", echo{}, nil); err != nil {
			t.Fatalf("request %d within burst: %v", i, err)
		}
	}

	err := a1.Request(ctx, "nodex.v1.policy.decide", "service:policy", echo{}, nil)
	if !errors.Is(err, errs.RateLimited) {
		t.Errorf("third request: got %v, want errs.RateLimited", err)
	}
	if err := a2.Request(ctx, "nodex.v1.policy.decide", "service:policy", echo{}, nil); err != nil {
		t.Errorf("other sender limited too: %v", err)
	}
}

func TestRequestTraceContext(t *testing.T) {
	srv := testkit.NATSServer(t)
	w := newWorld(t, srv)
	svc := newClient(t, srv, w.AddParty(t, "monitor-1", "service", "service:monitor"), nil)
	agent := newClient(t, srv, w.AddParty(t, "agent-1", "agent", "agent"), nil)
	var got trace.SpanContext
	if err := svc.Handle("nodex.v1.monitor.ping", "", func(ctx context.Context,
		_ *Request) (any, error) {
		got = trace.SpanContextFromContext(ctx)
		return echo{}, nil
	}); err != nil {
		t.Fatalf("handling: %v", err)
	}
	sc := trace.NewSpanContext(trace.SpanContextConfig{
		TraceID: trace.TraceID{1, 2, 3}, SpanID: trace.SpanID{4, 5}, TraceFlags: trace.FlagsSampled,
	})
	ctx := trace.ContextWithSpanContext(context.Background(), sc)

	if err := agent.Request(ctx, "nodex.v1.monitor.ping", "service:monitor", echo{}, nil); err != nil {
		t.Fatalf("request: %v", err)
	}
	if got.TraceID() != sc.TraceID() {
		t.Errorf("handler trace id = %s, want %s", got.TraceID(), sc.TraceID())
	}
	if !got.IsRemote() {
		t.Error("handler span context is not marked remote")
	}
}

func TestRequestWrongRoleNotAccepted(t *testing.T) {
	srv := testkit.NATSServer(t)
	w := newWorld(t, srv)
	// An impostor holding the codesec role key but registered without the
	// role must not have its reply accepted.
	impostor := w.AddParty(t, "impostor", "service", "service:other")
	w.Join(t, "service:codesec", impostor)
	imp := newClient(t, srv, impostor, nil)
	agent := newClient(t, srv, w.AddParty(t, "agent-1", "agent", "agent"), nil)
	if err := imp.Handle("nodex.v1.codesec.get", "", func(context.Context, *Request) (any, error) {
		return echo{Text: "forged"}, nil
	}); err != nil {
		t.Fatalf("handling: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()

	err := agent.Request(ctx, "nodex.v1.codesec.get", "service:codesec", echo{}, nil)
	if !errors.Is(err, errs.Timeout) {
		t.Errorf("got %v, want errs.Timeout (reply from a non-member ignored)", err)
	}
}

func TestPublishConsume(t *testing.T) {
	srv := testkit.NATSServer(t)
	w := newWorld(t, srv)
	ctx := context.Background()
	pub := newClient(t, srv, w.AddParty(t, "keyvault-1", "service", "service:keyvault"), nil)
	mon := newClient(t, srv, w.AddParty(t, "monitor-1", "service", "service:monitor"), nil)
	if _, err := EnsureStream(ctx, pub.JetStream(), jetstream.StreamConfig{
		Name: "NODEX_EVENTS", Subjects: []string{"nodex.v1.events.>"},
	}); err != nil {
		t.Fatalf("ensuring stream: %v", err)
	}
	got := make(chan *Message, 4)
	err := mon.Consume(ctx, ConsumeConfig{Stream: "NODEX_EVENTS",
		Consumer: jetstream.ConsumerConfig{Durable: "monitor-events"}},
		func(_ context.Context, m *Message) error {
			got <- m
			return nil
		})
	if err != nil {
		t.Fatalf("consuming: %v", err)
	}

	if err := pub.Publish(ctx, "nodex.v1.events.keyvault.key_stored", "service:monitor",
		echo{Text: "stored"}); err != nil {
		t.Fatalf("publishing: %v", err)
	}
	select {
	case m := <-got:
		var e echo
		if err := m.Decode(&e); err != nil {
			t.Fatalf("decoding: %v", err)
		}
		if e.Text != "stored" || m.Sender != "keyvault-1" {
			t.Errorf("got %+v from %s", e, m.Sender)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no event consumed within 5s")
	}
}

func TestRequestSchemaErrorIsInvalid(t *testing.T) {
	srv := testkit.NATSServer(t)
	w := newWorld(t, srv)
	svc := newClient(t, srv, w.AddParty(t, "codesec-1", "service", "service:codesec"), nil)
	agent := newClient(t, srv, w.AddParty(t, "agent-1", "agent", "agent"), nil)
	if err := svc.Handle("nodex.v1.codesec.submit", "codesec", func(_ context.Context,
		r *Request) (any, error) {
		var in echo
		return in, r.Decode(&in)
	}); err != nil {
		t.Fatal(err)
	}

	err := agent.Request(context.Background(), "nodex.v1.codesec.submit", "service:codesec",
		map[string]int{"unknown": 1}, nil)
	if !errors.Is(err, errs.InvalidRequest) {
		t.Errorf("got %v, want errs.InvalidRequest", err)
	}
}
