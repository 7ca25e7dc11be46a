package bus

import (
	"context"
	"testing"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/nodexsec/nodex/libs/testkit"
)

// TestBusSpans checks that the bus itself opens a client span for a request
// and a server span for its handling, in one trace, with the authenticated
// sender on the server span.
func TestBusSpans(t *testing.T) {
	exporter := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exporter))
	prev := otel.GetTracerProvider()
	otel.SetTracerProvider(tp)
	defer func() { otel.SetTracerProvider(prev); _ = tp.Shutdown(context.Background()) }()

	srv := testkit.NATSServer(t)
	w := newWorld(t, srv)
	svc := newClient(t, srv, w.AddParty(t, "policy-1", "service", "service:policy"), nil)
	agent := newClient(t, srv, w.AddParty(t, "agent-1", "agent", "agent"), nil)
	if err := svc.Handle("nodex.v1.policy.decide", "policy", func(context.Context,
		*Request) (any, error) {
		return echo{}, nil
	}); err != nil {
		t.Fatal(err)
	}
	if err := agent.Request(context.Background(), "nodex.v1.policy.decide", "service:policy",
		echo{}, nil); err != nil {
		t.Fatalf("request: %v", err)
	}

	// The server span ends after the reply is sent, so it may be recorded
	// after the request returns.
	byName := map[string]sdktrace.ReadOnlySpan{}
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); {
		for _, s := range exporter.GetSpans().Snapshots() {
			byName[s.Name()] = s
		}
		if len(byName) >= 2 {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	client, ok := byName["nodex.v1.policy.decide send"]
	if !ok {
		t.Fatalf("no client span; spans: %v", keys(byName))
	}
	server, ok := byName["nodex.v1.policy.decide process"]
	if !ok {
		t.Fatalf("no server span; spans: %v", keys(byName))
	}
	if server.Parent().SpanID() != client.SpanContext().SpanID() {
		t.Errorf("server span's parent = %s, want the client span %s",
			server.Parent().SpanID(), client.SpanContext().SpanID())
	}
	if got := attr(server.Attributes(), attrPeer); got != "agent-1" {
		t.Errorf("server span peer = %q, want the authenticated sender agent-1", got)
	}
}

func keys(m map[string]sdktrace.ReadOnlySpan) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}

	return out
}

func attr(kvs []attribute.KeyValue, key string) string {
	for _, kv := range kvs {
		if string(kv.Key) == key {
			return kv.Value.AsString()
		}
	}

	return ""
}
