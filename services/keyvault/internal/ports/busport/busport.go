// Package busport serves the keyvault's request subjects over libs/bus.
// Each handler decodes the body, takes the caller from the authenticated
// envelope, opens a span and calls the app layer.
package busport

import (
	"context"
	"fmt"
	"log/slog"
	"strings"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/nodexsec/nodex/libs/authz"
	"github.com/nodexsec/nodex/libs/bus"
	"github.com/nodexsec/nodex/libs/errs"
	"github.com/nodexsec/nodex/services/keyvault/api"
	"github.com/nodexsec/nodex/services/keyvault/internal/app"
)

// ReplayGuard records the ids of state-changing requests.
type ReplayGuard interface {
	// RecordRequest reports whether id was new.
	RecordRequest(ctx context.Context, id string) (bool, error)
}

// Options are the handlers' collaborators; all are required.
type Options struct {
	Tracer  trace.Tracer
	Replays ReplayGuard
	Log     *slog.Logger
}

type port struct {
	Options
}

// Register serves every keyvault subject on client in [api.QueueGroup].
func Register(client *bus.Client, svc *app.Service, o Options) error {
	if o.Tracer == nil || o.Replays == nil || o.Log == nil {
		return fmt.Errorf("keyvault/busport: Register needs Tracer, Replays and Log")
	}
	p := &port{Options: o}
	handlers := []struct {
		subject  string
		mutating bool
		h        func(context.Context, *bus.Request) (any, error)
	}{
		{api.SubjectStore, true, handle(svc.Store)},
		{api.SubjectRetrieve, false, handle(svc.Retrieve)},
		{api.SubjectRotate, true, handle(svc.Rotate)},
		{api.SubjectList, false, handle(svc.List)},
		{api.SubjectDelete, true, handle(svc.Delete)},
		{api.SubjectRotateKEK, true, handle(svc.RotateKEK)},
		{api.SubjectDisable, true, handle(svc.Disable)},
		{api.SubjectFingerprintKey, false, handleNoBody(svc.FingerprintKey)},
	}
	for _, h := range handlers {
		if err := client.Handle(h.subject, api.QueueGroup, p.wrap(h.subject, h.mutating, h.h)); err != nil {
			return fmt.Errorf("serving %s: %w", h.subject, err)
		}
	}

	return nil
}

// wrap adds the span, the replay guard and the log line around h. Span
// attributes and log lines carry subject, identity and outcome, never a
// request body.
func (p *port) wrap(subject string, mutating bool, h bus.Handler) bus.Handler {
	action := subject[strings.LastIndexByte(subject, '.')+1:]

	return func(ctx context.Context, r *bus.Request) (any, error) {
		ctx, span := p.Tracer.Start(ctx, "keyvault."+action, trace.WithSpanKind(trace.SpanKindServer),
			trace.WithAttributes(attribute.String("messaging.destination.name", subject),
				attribute.String("nodex.identity", r.Sender)))
		defer span.End()

		reply, err := p.guarded(ctx, r, mutating, h)
		if err != nil {
			coded := errs.From(err)
			span.SetStatus(codes.Error, coded.Name)
			span.SetAttributes(attribute.String("nodex.error", coded.Name))
			level := slog.LevelDebug
			if coded.Class == "internal" || coded.Class == "unavailable" {
				level = slog.LevelWarn
			}
			p.Log.Log(ctx, level, "request failed", "subject", subject, "identity", r.Sender,
				"msg_id", r.ID(), "error", err)

			return nil, coded
		}

		return reply, nil
	}
}

func (p *port) guarded(ctx context.Context, r *bus.Request, mutating bool, h bus.Handler) (
	any, error) {
	if mutating {
		fresh, err := p.Replays.RecordRequest(ctx, r.ID())
		if err != nil {
			return nil, errs.Unavailable.Wrap(err)
		}
		if !fresh {
			return nil, errs.Conflict.Withf("request %s was already processed", r.ID())
		}
	}

	return h(ctx, r)
}

// caller builds the app's caller from the envelope. The bus accepts only
// active registry identities, so the status is active.
func caller(r *bus.Request) app.Caller {
	return app.Caller{ID: r.Sender, Kind: r.SenderKind, Roles: r.SenderRoles,
		Status: authz.StatusActive}
}

func handle[Req, Reply any](op func(context.Context, app.Caller, Req) (Reply, error)) bus.Handler {
	return func(ctx context.Context, r *bus.Request) (any, error) {
		var req Req
		if err := r.Decode(&req); err != nil {
			// The decoder's message can quote the body, which may hold a
			// key value, so only the generic text goes back.
			return nil, errs.InvalidRequest.Withf("the %s body does not match its schema",
				r.Subject)
		}

		return op(ctx, caller(r), req)
	}
}

func handleNoBody[Reply any](op func(context.Context, app.Caller) (Reply, error)) bus.Handler {
	return func(ctx context.Context, r *bus.Request) (any, error) {
		return op(ctx, caller(r))
	}
}
