package bus

import (
	"context"
	"testing"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/nodexsec/nodex/libs/testkit"
)

// TestTraceSpansTwoParties records spans of a requester and a handler with
// the SDK's in-memory exporter and checks that they form one trace, the
// handler's span a child of the requester's.
func TestTraceSpansTwoParties(t *testing.T) {
	srv := testkit.NATSServer(t)
	w := newWorld(t, srv)
	exporter := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exporter))
	defer func() { _ = tp.Shutdown(context.Background()) }()
	svc := newClient(t, srv, w.AddParty(t, "policy-1", "service", "service:policy"), nil)
	agent := newClient(t, srv, w.AddParty(t, "agent-1", "agent", "agent"), nil)
	if err := svc.Handle("nodex.v1.policy.decide", "policy", func(ctx context.Context,
		_ *Request) (any, error) {
		_, span := tp.Tracer("policy").Start(ctx, "decide")
		span.End()
		return echo{}, nil
	}); err != nil {
		t.Fatal(err)
	}

	ctx, span := tp.Tracer("agent").Start(context.Background(), "ask")
	err := agent.Request(ctx, "nodex.v1.policy.decide", "service:policy", echo{}, nil)
	span.End()
	if err != nil {
		t.Fatalf("request: %v", err)
	}
	spans := exporter.GetSpans()
	if len(spans) != 2 {
		t.Fatalf("recorded %d spans, want 2", len(spans))
	}
	child, parent := spans[0], spans[1]
	if child.Name != "decide" || parent.Name != "ask" {
		t.Fatalf("spans %q, %q; want decide then ask", child.Name, parent.Name)
	}
	if child.SpanContext.TraceID() != parent.SpanContext.TraceID() {
		t.Errorf("trace ids differ: %s, %s", child.SpanContext.TraceID(),
			parent.SpanContext.TraceID())
	}
	if child.Parent.SpanID() != parent.SpanContext.SpanID() {
		t.Errorf("handler span's parent = %s, want the requester's span %s",
			child.Parent.SpanID(), parent.SpanContext.SpanID())
	}
}
