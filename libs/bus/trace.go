package bus

import (
	"context"

	"github.com/nats-io/nats.go"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/nodexsec/nodex/libs/errs"
	"github.com/nodexsec/nodex/libs/telemetry"
)

// tracerName names the bus's tracer. Spans come from the process's global
// tracer provider, which nodex dev and each service main set up.
const tracerName = "github.com/nodexsec/nodex/libs/bus"

// Span attribute keys. The messaging keys follow the OpenTelemetry semantic
// conventions for messaging systems.
const (
	attrSystem      = "messaging.system"
	attrDestination = "messaging.destination.name"
	attrOperation   = "messaging.operation.type"
	attrMessageID   = "messaging.message.id"
	attrIdentity    = "nodex.identity"
	attrPeer        = "nodex.peer"
	attrErrorName   = "nodex.error"
)

// injectTrace writes the span context of ctx into h. Trace headers are
// visible to the NATS operator and are never used for a decision.
func injectTrace(ctx context.Context, h nats.Header) { telemetry.Inject(ctx, h) }

// extractTrace returns ctx carrying the remote span context found in h.
func extractTrace(ctx context.Context, h nats.Header) context.Context {
	return telemetry.Extract(ctx, h)
}

// startSpan starts a span of kind for an operation on subject by the local
// identity self. The attributes are set only on a recording span, because
// without a tracer provider every message would otherwise build them
// (about 1.5 us per span on the benchmark machine). Samplers therefore see
// only the span name and kind.
func startSpan(ctx context.Context, kind trace.SpanKind, op, subject, self string,
) (context.Context, trace.Span) {
	ctx, span := otel.Tracer(tracerName).Start(ctx, subject+" "+op, trace.WithSpanKind(kind))
	if span.IsRecording() {
		span.SetAttributes(
			attribute.String(attrSystem, "nats"),
			attribute.String(attrDestination, subject),
			attribute.String(attrOperation, op),
			attribute.String(attrIdentity, self),
		)
	}

	return ctx, span
}

// endSpan records err, by its coded name only, and ends span. The coded
// name never carries a secret; the error text might, so it stays out.
func endSpan(span trace.Span, err error) {
	if err != nil {
		name := errs.From(err).Name
		span.SetAttributes(attribute.String(attrErrorName, name))
		span.SetStatus(codes.Error, name)
	}
	span.End()
}
