package telemetry

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/nodexsec/nodex/libs/testkit"
)

// TestTraceAcrossNATS follows one trace from a requester to a responder over
// a real NATS server, each party with its own provider.
func TestTraceAcrossNATS(t *testing.T) {
	ctx := context.Background()
	srv := testkit.NATSServer(t)
	nc := testkit.Connect(t, srv)

	exp := tracetest.NewInMemoryExporter()
	agent, err := Setup(ctx, Config{ServiceName: "agent", SpanExporter: exp})
	if err != nil {
		t.Fatal(err)
	}
	defer agent.Shutdown(ctx)
	svc, err := Setup(ctx, Config{ServiceName: "codesec", SpanExporter: exp})
	if err != nil {
		t.Fatal(err)
	}
	defer svc.Shutdown(ctx)

	sub, err := nc.Subscribe("nodex.v1.codesec.submit", func(m *nats.Msg) {
		rctx := Extract(context.Background(), m.Header)
		_, span := svc.Tracer("codesec").Start(rctx, "codesec.submit", trace.WithSpanKind(trace.SpanKindServer))
		span.End()
		_ = m.Respond([]byte("ok"))
	})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()

	rctx, span := agent.Tracer("agent").Start(ctx, "submit", trace.WithSpanKind(trace.SpanKindClient))
	msg := nats.NewMsg("nodex.v1.codesec.submit")
	Inject(rctx, msg.Header)
	if msg.Header.Get("traceparent") == "" {
		t.Fatal("Inject wrote no traceparent header")
	}
	if _, err := nc.RequestMsg(msg, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	span.End()

	spans := exp.GetSpans()
	if len(spans) != 2 {
		t.Fatalf("got %d spans, want 2", len(spans))
	}
	server, client := spans[0], spans[1]
	if server.SpanContext.TraceID() != client.SpanContext.TraceID() {
		t.Errorf("server trace %s, want the client's %s",
			server.SpanContext.TraceID(), client.SpanContext.TraceID())
	}
	if server.Parent.SpanID() != client.SpanContext.SpanID() {
		t.Errorf("server parent %s, want client span %s",
			server.Parent.SpanID(), client.SpanContext.SpanID())
	}
}

func TestExtractWithoutHeader(t *testing.T) {
	ctx := Extract(context.Background(), nil)
	if trace.SpanContextFromContext(ctx).IsValid() {
		t.Error("Extract(nil) produced a span context")
	}
}

func TestPrometheusEndpoint(t *testing.T) {
	ctx := context.Background()
	p, err := Setup(ctx, Config{ServiceName: "monitor", MetricsAddr: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Shutdown(ctx)
	c, err := p.Meter("test").Int64Counter("nodex_probe_total")
	if err != nil {
		t.Fatal(err)
	}
	c.Add(ctx, 3)

	resp, err := http.Get("http://" + p.MetricsAddr() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if !strings.Contains(string(body), "nodex_probe_total") {
		t.Errorf("metrics output lacks nodex_probe_total:\n%s", body)
	}
}

func TestSetupRequiresName(t *testing.T) {
	if _, err := Setup(context.Background(), Config{}); err == nil {
		t.Error("Setup with no service name succeeded")
	}
}
