package app

import (
	"context"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
)

// tracerName names the tracer of the runner's step spans.
const tracerName = "nodex/sandbox"

// Span attribute keys. Step spans carry ids, counts and outcomes only,
// never code, output or key material.
const (
	attrBundle = "nodex.bundle_id"
	attrRun    = "nodex.run_id"
)

// startStep starts the span of one step of a run as a child of ctx's span.
func startStep(ctx context.Context, name string, attrs ...attribute.KeyValue) (context.Context,
	trace.Span) {
	return otel.Tracer(tracerName).Start(ctx, name, trace.WithAttributes(attrs...))
}

// endStep ends span, marking it failed when err is set. Only the fact of
// the failure is recorded: an error's text may quote bundle contents.
func endStep(span trace.Span, err error) {
	if err != nil {
		span.SetStatus(codes.Error, "step failed")
	}
	span.End()
}
