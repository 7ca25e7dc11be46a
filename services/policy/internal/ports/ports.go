// Package ports serves the policy service's request subjects over libs/bus.
package ports

import (
	"context"
	"fmt"

	"github.com/nodexsec/nodex/libs/bus"
	"github.com/nodexsec/nodex/libs/errs"
	"github.com/nodexsec/nodex/services/policy/internal/app"
)

// Subjects the policy service serves.
const (
	SubjectDecide   = "nodex.v1.policy.decide"
	SubjectRoleAdd  = "nodex.v1.policy.role.add"
	SubjectRoleBind = "nodex.v1.policy.role.bind"
	SubjectPush     = "nodex.v1.policy.push"
	SubjectTest     = "nodex.v1.policy.test"
	SubjectRestrict = "nodex.v1.policy.restrict"
)

// Register serves every policy subject on c with svc, in queue group queue.
func Register(c *bus.Client, queue string, svc *app.Service) error {
	handlers := map[string]bus.Handler{
		SubjectDecide:   handle(svc.Decide),
		SubjectRoleAdd:  handle(svc.AddRole),
		SubjectRoleBind: handle(svc.BindRole),
		SubjectPush:     handle(svc.Push),
		SubjectTest:     handle(svc.Test),
		SubjectRestrict: handle(svc.Restrict),
	}
	for subject, h := range handlers {
		if err := c.Handle(subject, queue, h); err != nil {
			return fmt.Errorf("serving %s: %w", subject, err)
		}
	}

	return nil
}

// handle adapts a use case to a bus handler: it decodes the body strictly
// (unknown fields are rejected) and passes the authenticated sender.
func handle[Req, Resp any](f func(context.Context, app.Caller, Req) (Resp, error)) bus.Handler {
	return func(ctx context.Context, r *bus.Request) (any, error) {
		var req Req
		if err := r.Decode(&req); err != nil {
			return nil, errs.InvalidRequest.Withf("decoding %s body: %s", r.Subject, err)
		}

		return f(ctx, callerOf(r), req)
	}
}

func callerOf(r *bus.Request) app.Caller {
	return app.Caller{ID: r.Sender, Kind: r.SenderKind, Roles: r.SenderRoles}
}
