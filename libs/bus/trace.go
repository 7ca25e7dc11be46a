package bus

import (
	"context"

	"github.com/nats-io/nats.go"
	"go.opentelemetry.io/otel/propagation"
)

// headerCarrier adapts nats.Header to the OpenTelemetry text map carrier,
// so W3C traceparent and tracestate travel as NATS headers. Trace headers
// are visible to the NATS operator and are never used for a decision.
type headerCarrier nats.Header

var _ propagation.TextMapCarrier = headerCarrier{}

// Get returns the first value of key.
func (c headerCarrier) Get(key string) string { return nats.Header(c).Get(key) }

// Set replaces the values of key.
func (c headerCarrier) Set(key, value string) { nats.Header(c).Set(key, value) }

// Keys returns the header names.
func (c headerCarrier) Keys() []string {
	keys := make([]string, 0, len(c))
	for k := range c {
		keys = append(keys, k)
	}

	return keys
}

var traceContext = propagation.TraceContext{}

// injectTrace writes the span context of ctx into h.
func injectTrace(ctx context.Context, h nats.Header) { traceContext.Inject(ctx, headerCarrier(h)) }

// extractTrace returns ctx carrying the remote span context found in h.
func extractTrace(ctx context.Context, h nats.Header) context.Context {
	if h == nil {
		return ctx
	}

	return traceContext.Extract(ctx, headerCarrier(h))
}
