// Package telemetry sets up OpenTelemetry tracing and metrics for a NodeX
// party and carries W3C trace context in NATS message headers, so one trace
// spans every service a request touches.
//
// Export is off by default. OTEL_EXPORTER_OTLP_ENDPOINT turns on OTLP over
// HTTP (the SDK reads the other OTEL_EXPORTER_OTLP_* variables itself);
// OTEL_TRACES_EXPORTER=console writes spans to standard error. Trace context
// is propagated either way. Trace context is information for operators only:
// no NodeX decision reads it, because any sender can set it.
package telemetry

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	otelprom "go.opentelemetry.io/otel/exporters/prometheus"
	"go.opentelemetry.io/otel/exporters/stdout/stdouttrace"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/propagation"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"

	"github.com/nodexsec/nodex/libs/conf"
)

// Config selects the exporters of a [Provider]. The zero value (with a
// ServiceName) exports nothing and still propagates trace context.
type Config struct {
	// ServiceName is the service.name resource attribute, e.g. "codesec".
	ServiceName string
	// Getenv reads OTEL_EXPORTER_OTLP_ENDPOINT and OTEL_TRACES_EXPORTER; nil
	// means no environment is read.
	Getenv conf.Getenv
	// SpanExporter, when set, receives every span in addition to what the
	// environment selects; tests pass tracetest's in-memory exporter.
	SpanExporter sdktrace.SpanExporter
	// MetricsAddr is the host:port of a Prometheus /metrics endpoint; empty
	// means none. Use a loopback address unless a scraper needs more.
	MetricsAddr string
}

// Provider owns the tracer and meter providers of one party.
type Provider struct {
	tp       *sdktrace.TracerProvider
	mp       *sdkmetric.MeterProvider
	srv      *http.Server
	addr     string
	shutdown []func(context.Context) error
}

// Setup builds a Provider from cfg. Call Shutdown when the party stops so
// that batched spans are flushed.
func Setup(ctx context.Context, cfg Config) (*Provider, error) {
	if cfg.ServiceName == "" {
		return nil, errors.New("telemetry: service name is empty")
	}
	getenv := cfg.Getenv
	if getenv == nil {
		getenv = func(string) string { return "" }
	}
	res := resource.NewSchemaless(attribute.String("service.name", cfg.ServiceName))
	topts := []sdktrace.TracerProviderOption{sdktrace.WithResource(res)}

	if ep := getenv("OTEL_EXPORTER_OTLP_ENDPOINT"); ep != "" {
		exp, err := otlptracehttp.New(ctx)
		if err != nil {
			return nil, fmt.Errorf("telemetry: creating OTLP trace exporter for %s: %w", ep, err)
		}
		topts = append(topts, sdktrace.WithBatcher(exp))
	}
	if getenv("OTEL_TRACES_EXPORTER") == "console" {
		exp, err := stdouttrace.New(stdouttrace.WithWriter(os.Stderr))
		if err != nil {
			return nil, fmt.Errorf("telemetry: creating console trace exporter: %w", err)
		}
		topts = append(topts, sdktrace.WithBatcher(exp))
	}
	if cfg.SpanExporter != nil {
		topts = append(topts, sdktrace.WithSyncer(cfg.SpanExporter))
	}
	p := &Provider{tp: sdktrace.NewTracerProvider(topts...)}
	p.shutdown = append(p.shutdown, p.tp.Shutdown)

	if err := p.setupMetrics(res, cfg.MetricsAddr); err != nil {
		_ = p.Shutdown(ctx)
		return nil, err
	}

	return p, nil
}

func (p *Provider) setupMetrics(res *resource.Resource, addr string) error {
	if addr == "" {
		p.mp = sdkmetric.NewMeterProvider(sdkmetric.WithResource(res))
		p.shutdown = append(p.shutdown, p.mp.Shutdown)
		return nil
	}
	reg := prometheus.NewRegistry()
	exp, err := otelprom.New(otelprom.WithRegisterer(reg))
	if err != nil {
		return fmt.Errorf("telemetry: creating Prometheus exporter: %w", err)
	}
	p.mp = sdkmetric.NewMeterProvider(sdkmetric.WithResource(res), sdkmetric.WithReader(exp))
	p.shutdown = append(p.shutdown, p.mp.Shutdown)

	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("telemetry: listening for metrics on %s: %w", addr, err)
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	p.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	p.addr = ln.Addr().String()
	go func() { _ = p.srv.Serve(ln) }()
	p.shutdown = append(p.shutdown, p.srv.Shutdown)

	return nil
}

// Tracer returns a tracer of this provider for the named component.
func (p *Provider) Tracer(name string) trace.Tracer { return p.tp.Tracer(name) }

// Meter returns a meter of this provider for the named component.
func (p *Provider) Meter(name string) metric.Meter { return p.mp.Meter(name) }

// TracerProvider returns the underlying tracer provider.
func (p *Provider) TracerProvider() trace.TracerProvider { return p.tp }

// MeterProvider returns the underlying meter provider.
func (p *Provider) MeterProvider() metric.MeterProvider { return p.mp }

// MetricsAddr returns the address the Prometheus endpoint listens on, or ""
// when there is none. With a ":0" port it tells which port was chosen.
func (p *Provider) MetricsAddr() string { return p.addr }

// Shutdown flushes and stops the exporters and the metrics endpoint.
func (p *Provider) Shutdown(ctx context.Context) error {
	var errs []error
	for i := len(p.shutdown) - 1; i >= 0; i-- {
		errs = append(errs, p.shutdown[i](ctx))
	}

	return errors.Join(errs...)
}

// propagator is the W3C trace context format, used without touching the
// process-global propagator so that libraries embedding NodeX keep theirs.
var propagator = propagation.TraceContext{}

// HeaderCarrier adapts nats.Header to propagation.TextMapCarrier.
type HeaderCarrier nats.Header

var _ propagation.TextMapCarrier = HeaderCarrier{}

// Get returns the first value of key.
func (c HeaderCarrier) Get(key string) string { return nats.Header(c).Get(key) }

// Set replaces the values of key.
func (c HeaderCarrier) Set(key, value string) { nats.Header(c).Set(key, value) }

// Keys lists the header keys.
func (c HeaderCarrier) Keys() []string {
	keys := make([]string, 0, len(c))
	for k := range c {
		keys = append(keys, k)
	}

	return keys
}

// Inject writes the span context of ctx into h as a traceparent header.
func Inject(ctx context.Context, h nats.Header) {
	propagator.Inject(ctx, HeaderCarrier(h))
}

// Extract returns ctx with the remote span context found in h, if any.
func Extract(ctx context.Context, h nats.Header) context.Context {
	if h == nil {
		return ctx
	}

	return propagator.Extract(ctx, HeaderCarrier(h))
}
