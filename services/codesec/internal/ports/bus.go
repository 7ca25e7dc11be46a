// Package ports serves codesec's request subjects over libs/bus.
package ports

import (
	"context"
	"errors"
	"log/slog"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/nodexsec/nodex/libs/bus"
	"github.com/nodexsec/nodex/libs/errs"
	"github.com/nodexsec/nodex/services/codesec/internal/app"
	"github.com/nodexsec/nodex/services/codesec/internal/domain"
)

// Request subjects. The role "service:codesec" serves them in the queue
// group "codesec", so replicas share the load.
const (
	SubjectSubmit = "nodex.v1.codesec.submit"
	SubjectRevoke = "nodex.v1.codesec.revoke"
	SubjectGet    = "nodex.v1.codesec.get"
	QueueGroup    = "codesec"
	Role          = "service:codesec"
)

// Handlers serves the codesec subjects.
type Handlers struct {
	svc *app.Service
	log *slog.Logger
}

// New returns the handlers. It panics on a nil service or logger.
func New(svc *app.Service, log *slog.Logger) *Handlers {
	if svc == nil || log == nil {
		panic("codesec/ports: New needs a service and a logger")
	}

	return &Handlers{svc: svc, log: log.With("component", "bus")}
}

// Register subscribes every handler on c.
func (h *Handlers) Register(c *bus.Client) error {
	handlers := []struct {
		subject string
		handler bus.Handler
	}{
		{SubjectSubmit, h.submit},
		{SubjectRevoke, h.revoke},
		{SubjectGet, h.get},
	}
	for _, hd := range handlers {
		if err := c.Handle(hd.subject, QueueGroup, traced(hd.subject, hd.handler)); err != nil {
			return err
		}
	}

	return nil
}

// traced opens a span per request, a child of the caller's trace context
// that the bus carries in the message headers.
func traced(subject string, h bus.Handler) bus.Handler {
	tracer := otel.Tracer("nodex/codesec")

	return func(ctx context.Context, req *bus.Request) (any, error) {
		ctx, span := tracer.Start(ctx, subject, trace.WithSpanKind(trace.SpanKindServer))
		defer span.End()

		reply, err := h(ctx, req)
		if err != nil {
			span.SetStatus(codes.Error, errs.From(err).Name)
		}

		return reply, err
	}
}

func caller(req *bus.Request) app.Caller {
	return app.Caller{ID: req.Sender, Kind: req.SenderKind, Roles: req.SenderRoles}
}

func traceID(ctx context.Context) string {
	sc := trace.SpanContextFromContext(ctx)
	if !sc.HasTraceID() {
		return ""
	}

	return sc.TraceID().String()
}

func (h *Handlers) submit(ctx context.Context, req *bus.Request) (any, error) {
	sub, err := domain.ParseSubmission(req.Body)
	if err != nil {
		h.log.InfoContext(ctx, "submission rejected", "identity", req.Sender, "error", err)
		return nil, validationError(err)
	}

	return h.svc.Submit(ctx, caller(req), sub, traceID(ctx))
}

func (h *Handlers) revoke(ctx context.Context, req *bus.Request) (any, error) {
	var body app.RevokeRequest
	if err := req.Decode(&body); err != nil {
		return nil, errs.InvalidRequest.Withf("the body must be {\"bundle_id\", \"reason\"}")
	}

	return h.svc.Revoke(ctx, caller(req), body, traceID(ctx))
}

func (h *Handlers) get(ctx context.Context, req *bus.Request) (any, error) {
	var body app.GetRequest
	if err := req.Decode(&body); err != nil {
		return nil, errs.InvalidRequest.Withf("the body must be {\"bundle_id\"}")
	}

	return h.svc.Get(ctx, caller(req), body, traceID(ctx))
}

// validationError maps a submission problem to its coded error; the
// description names the field, the value and the fix.
func validationError(err error) error {
	var ve *domain.ValidationError
	if !errors.As(err, &ve) {
		return errs.InvalidRequest.Wrap(err)
	}
	switch ve.Kind {
	case domain.ProblemUnsupported:
		return errs.UnsupportedLanguage.Withf("%s", ve.Error())
	case domain.ProblemTooLarge:
		return errs.PayloadTooLarge.Withf("%s", ve.Error())
	default:
		return errs.InvalidRequest.Withf("%s", ve.Error())
	}
}
