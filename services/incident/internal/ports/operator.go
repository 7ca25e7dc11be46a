package ports

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"github.com/nodexsec/nodex/libs/authz"
	"github.com/nodexsec/nodex/libs/bus"
	"github.com/nodexsec/nodex/libs/errs"
	"github.com/nodexsec/nodex/libs/logx"
	"github.com/nodexsec/nodex/services/incident/internal/app"
	"github.com/nodexsec/nodex/services/incident/internal/domain"
)

// Operator request subjects. The role "service:incident" serves them in the
// queue group "incident".
const (
	SubjectList   = "nodex.v1.incident.list"
	SubjectGet    = "nodex.v1.incident.get"
	SubjectUpdate = "nodex.v1.incident.update"
	SubjectReport = "nodex.v1.incident.report"
	QueueGroup    = "incident"
	Role          = "service:incident"
)

// ListRequest is the body of nodex.v1.incident.list.
type ListRequest = app.ListFilter

// ListReply is the reply of nodex.v1.incident.list.
type ListReply struct {
	Incidents []domain.Summary `json:"incidents"`
}

// GetRequest is the body of nodex.v1.incident.get and .report.
type GetRequest struct {
	ID string `json:"id"`
}

// GetReply is the reply of nodex.v1.incident.get and .update: the incident
// and the revisions the bucket keeps of it.
type GetReply struct {
	Incident  *domain.Incident `json:"incident"`
	Revisions []app.Revision   `json:"revisions,omitempty"`
}

// UpdateRequest is the body of nodex.v1.incident.update.
type UpdateRequest = app.UpdateRequest

// ReportReply is the reply of nodex.v1.incident.report.
type ReportReply struct {
	Report   domain.Report `json:"report"`
	Markdown string        `json:"markdown"`
}

// Authorizer decides operator requests; *authz.Engine implements it.
type Authorizer interface {
	Decide(ctx context.Context, in authz.Input) (authz.Decision, error)
}

// Operator serves the operator subjects.
type Operator struct {
	svc  *app.Service
	auth Authorizer
	log  *slog.Logger
}

// NewOperator returns the operator handlers.
func NewOperator(svc *app.Service, auth Authorizer, log *slog.Logger) *Operator {
	if svc == nil || auth == nil || log == nil {
		panic("ports: NewOperator needs a service, an authorizer and a logger")
	}

	return &Operator{svc: svc, auth: auth, log: log.With(logx.KeyComponent, "operator")}
}

// Register subscribes the handlers on c.
func (o *Operator) Register(c *bus.Client) error {
	for subject, h := range map[string]bus.Handler{
		SubjectList: o.list, SubjectGet: o.get, SubjectUpdate: o.update,
		SubjectReport: o.report,
	} {
		if err := c.Handle(subject, QueueGroup, h); err != nil {
			return fmt.Errorf("serving %s: %w", subject, err)
		}
	}

	return nil
}

// authorize returns an access_denied error unless the policy allows the
// sender action ("list", "get", "update" or "contain") on the resource of
// type "incident" with the given id.
func (o *Operator) authorize(ctx context.Context, r *bus.Request, action, id string) error {
	d, err := o.auth.Decide(ctx, authz.Input{
		Subject: authz.Subject{ID: r.Sender, Kind: r.SenderKind, Roles: r.SenderRoles,
			Status: authz.StatusActive},
		Action: action, Resource: authz.Resource{Type: "incident", ID: id},
	})
	if err != nil || !d.Allow {
		o.log.WarnContext(ctx, "operator request denied", "sender", r.Sender, "action", action,
			logx.KeyIncidentID, id, "reasons", d.Reasons, logx.KeyError, err)

		return errs.AccessDenied.Withf("%s may not %s incidents: %v", r.Sender, action,
			d.Reasons)
	}

	return nil
}

func (o *Operator) list(ctx context.Context, r *bus.Request) (any, error) {
	var req ListRequest
	if err := r.Decode(&req); err != nil {
		return nil, errs.InvalidRequest.Withf("decoding list request: %v", err)
	}
	if err := o.authorize(ctx, r, "list", ""); err != nil {
		return nil, err
	}
	out, err := o.svc.List(ctx, req)
	if err != nil {
		return nil, o.coded(ctx, err)
	}

	return ListReply{Incidents: out}, nil
}

func (o *Operator) get(ctx context.Context, r *bus.Request) (any, error) {
	var req GetRequest
	if err := r.Decode(&req); err != nil {
		return nil, errs.InvalidRequest.Withf("decoding get request: %v", err)
	}
	if err := o.authorize(ctx, r, "get", req.ID); err != nil {
		return nil, err
	}
	inc, err := o.svc.Get(ctx, req.ID)
	if err != nil {
		return nil, o.coded(ctx, err)
	}
	revs, err := o.svc.Revisions(ctx, req.ID)
	if err != nil {
		return nil, o.coded(ctx, err)
	}

	return GetReply{Incident: inc, Revisions: revs}, nil
}

func (o *Operator) update(ctx context.Context, r *bus.Request) (any, error) {
	var req UpdateRequest
	if err := r.Decode(&req); err != nil {
		return nil, errs.InvalidRequest.Withf("decoding update request: %v", err)
	}
	action := "update"
	switch req.Verb {
	case app.VerbContain, app.VerbApprove, app.VerbLift:
		action = "contain"
	}
	if err := o.authorize(ctx, r, action, req.ID); err != nil {
		return nil, err
	}
	inc, err := o.svc.Update(ctx, r.Sender, req)
	if err != nil {
		return nil, o.coded(ctx, err)
	}

	return GetReply{Incident: inc}, nil
}

func (o *Operator) report(ctx context.Context, r *bus.Request) (any, error) {
	var req GetRequest
	if err := r.Decode(&req); err != nil {
		return nil, errs.InvalidRequest.Withf("decoding report request: %v", err)
	}
	if err := o.authorize(ctx, r, "get", req.ID); err != nil {
		return nil, err
	}
	rep, md, err := o.svc.Report(ctx, req.ID)
	if err != nil {
		return nil, o.coded(ctx, err)
	}

	return ReportReply{Report: rep, Markdown: md}, nil
}

// coded maps an app error to the coded error of the reply. Operator
// mistakes carry their text, which names the incident and the next step;
// anything else is internal and only logged.
func (o *Operator) coded(ctx context.Context, err error) error {
	var e *errs.Error
	switch {
	case errors.Is(err, domain.ErrIllegalTransition):
		e = errs.IllegalTransition
	case errors.Is(err, app.ErrInvalidRequest), errors.Is(err, domain.ErrInvalidThreat):
		e = errs.InvalidRequest
	case errors.Is(err, app.ErrNotFound), errors.Is(err, domain.ErrActionNotFound):
		e = errs.NotFound
	case errors.Is(err, app.ErrSelfApproval):
		e = errs.ApprovalRequired
	case errors.Is(err, app.ErrActionFailed):
		e = errs.Unavailable
	case errors.Is(err, app.ErrConflict), errors.Is(err, domain.ErrActionState),
		errors.Is(err, app.ErrNotContained):
		e = errs.Conflict
	default:
		o.log.ErrorContext(ctx, "operator request failed", logx.KeyError, err)

		return errs.Internal.Wrap(err)
	}

	return e.Withf("%s", err.Error()).Wrap(err)
}
