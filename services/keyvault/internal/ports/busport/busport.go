// Package busport serves the keyvault's request subjects over libs/bus.
// Each handler decodes the body, takes the caller from the authenticated
// envelope and calls the app layer.
package busport

import (
	"context"
	"fmt"

	"github.com/nodexsec/nodex/libs/authz"
	"github.com/nodexsec/nodex/libs/bus"
	"github.com/nodexsec/nodex/libs/errs"
	"github.com/nodexsec/nodex/services/keyvault/api"
	"github.com/nodexsec/nodex/services/keyvault/internal/app"
)

// Register serves every keyvault subject on client in [api.QueueGroup].
func Register(client *bus.Client, svc *app.Service) error {
	handlers := map[string]bus.Handler{
		api.SubjectStore:          handle(svc.Store),
		api.SubjectRetrieve:       handle(svc.Retrieve),
		api.SubjectRotate:         handle(svc.Rotate),
		api.SubjectList:           handle(svc.List),
		api.SubjectDelete:         handle(svc.Delete),
		api.SubjectRotateKEK:      handle(svc.RotateKEK),
		api.SubjectDisable:        handle(svc.Disable),
		api.SubjectFingerprintKey: handleNoBody(svc.FingerprintKey),
	}
	for subject, h := range handlers {
		if err := client.Handle(subject, api.QueueGroup, h); err != nil {
			return fmt.Errorf("serving %s: %w", subject, err)
		}
	}

	return nil
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
