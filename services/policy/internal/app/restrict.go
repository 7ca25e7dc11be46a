package app

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"strconv"
	"time"

	"github.com/nodexsec/nodex/libs/authz"
	"github.com/nodexsec/nodex/libs/errs"
	"github.com/nodexsec/nodex/libs/events"
)

// RestrictRequest is the body of nodex.v1.policy.restrict.
type RestrictRequest struct {
	// Identity is the id of the identity to restrict.
	Identity string `json:"identity"`
	// Restriction is authz.RestrictKeyAccess or authz.RestrictRateLimit.
	Restriction string `json:"restriction"`
	// Lift removes the restriction instead of setting it.
	Lift bool `json:"lift,omitempty"`
	// RequestsPerMinute is the cap of a rate_limit restriction being set.
	RequestsPerMinute int `json:"requests_per_minute,omitempty"`
	// Reason is why the restriction is set, shown in the audit event and
	// in the reasons of denied decisions.
	Reason string `json:"reason"`
	// IncidentID is the incident that requests the change.
	IncidentID string `json:"incident_id"`
	// ExpiresAt, if set, is when policies stop applying the restriction.
	ExpiresAt time.Time `json:"expires_at,omitzero"`
}

// RestrictReply is the reply of nodex.v1.policy.restrict.
type RestrictReply struct {
	Identity    string `json:"identity"`
	Restriction string `json:"restriction"`
	// Active reports whether the restriction is stored after the request.
	Active bool `json:"active"`
	// Changed is false when the stored state already matched the request,
	// so a repeated request is harmless.
	Changed bool `json:"changed"`
	// Revision is the role data's bucket revision after the request.
	Revision uint64 `json:"revision"`
}

// EventSink persists audit events; *events.Publisher implements it.
type EventSink interface {
	PublishSync(ctx context.Context, ev events.SecurityEvent) error
}

// maxRequestsPerMinute bounds a rate_limit cap, because a larger cap would
// not tighten the keyvault's default per-caller rate of a few per second.
const maxRequestsPerMinute = 100_000

// maxReasonBytes bounds the reason and incident id that the restriction
// stores in the role data every service loads.
const maxReasonBytes = 512

// Restrict sets or lifts a containment restriction on an identity in the
// role data, then persists an audit event. Setting a restriction that is
// already stored with the same fields, or lifting one that is not stored,
// changes nothing but still replies, so the incident service may retry.
func (s *Service) Restrict(ctx context.Context, c Caller, req RestrictRequest) (
	RestrictReply, error) {
	if err := validateRestrict(req); err != nil {
		return RestrictReply{}, err
	}
	if err := s.authorize(ctx, c, "restrict", req.Identity); err != nil {
		return RestrictReply{}, err
	}
	if s.d.Events == nil {
		return RestrictReply{}, errs.Unavailable.Withf("restrictions need an audit event sink")
	}

	want := authz.Restriction{Reason: req.Reason, IncidentID: req.IncidentID, SetBy: c.ID,
		Since: s.d.Now().UTC(), ExpiresAt: req.ExpiresAt.UTC(),
		RequestsPerMinute: req.RequestsPerMinute}
	changed := false
	_, rev, err := s.updateRBAC(ctx, func(r *authz.RBAC) error {
		changed = applyRestriction(r, req, want)
		if !changed {
			return errUnchanged
		}
		return nil
	})
	if errors.Is(err, errUnchanged) {
		_, rev, err = s.d.Store.RBAC(ctx)
	}
	if err != nil {
		return RestrictReply{}, err
	}

	if err := s.auditRestrict(ctx, c, req, changed); err != nil {
		return RestrictReply{}, err
	}
	s.log.InfoContext(ctx, "restriction stored", "restricted_identity", req.Identity,
		"restriction", req.Restriction, "lift", req.Lift, "changed", changed,
		"incident_id", req.IncidentID, "identity", c.ID, "revision", rev)

	return RestrictReply{Identity: req.Identity, Restriction: req.Restriction,
		Active: !req.Lift, Changed: changed, Revision: rev}, nil
}

// errUnchanged stops updateRBAC when the role data already has the
// requested state, so that no write happens.
var errUnchanged = errors.New("policy: restriction already in the requested state")

func validateRestrict(req RestrictRequest) error {
	if err := authz.ValidateSubjectID(req.Identity); err != nil {
		return errs.InvalidRequest.Withf("%s", err.Error())
	}
	if len(req.Reason) > maxReasonBytes || len(req.IncidentID) > maxReasonBytes {
		return errs.InvalidRequest.Withf("reason and incident_id must be at most %d bytes",
			maxReasonBytes)
	}
	if !req.Lift && req.Reason == "" {
		return errs.InvalidRequest.Withf("reason is missing; say why %q is restricted",
			req.Identity)
	}

	switch req.Restriction {
	case authz.RestrictKeyAccess:
		if req.RequestsPerMinute != 0 {
			return errs.InvalidRequest.Withf("requests_per_minute applies only to %s, not %s",
				authz.RestrictRateLimit, authz.RestrictKeyAccess)
		}
	case authz.RestrictRateLimit:
		rpm := req.RequestsPerMinute
		if !req.Lift && (rpm < 1 || rpm > maxRequestsPerMinute) {
			return errs.InvalidRequest.Withf("requests_per_minute %d must be between 1 and %d; "+
				"use %s to stop every retrieve", rpm, maxRequestsPerMinute, authz.RestrictKeyAccess)
		}
	default:
		return errs.InvalidRequest.Withf("restriction %q must be %q or %q", req.Restriction,
			authz.RestrictKeyAccess, authz.RestrictRateLimit)
	}

	return nil
}

// applyRestriction stores or removes the restriction in r and reports
// whether r changed. A repeated set keeps the original Since and SetBy.
func applyRestriction(r *authz.RBAC, req RestrictRequest, want authz.Restriction) bool {
	byKind := r.Restrictions[req.Identity]
	old, exists := byKind[req.Restriction]
	if req.Lift {
		if !exists {
			return false
		}
		byKind = maps.Clone(byKind)
		delete(byKind, req.Restriction)
		setRestrictions(r, req.Identity, byKind)

		return true
	}

	if exists {
		want.Since, want.SetBy = old.Since, old.SetBy
		if sameRestriction(old, want) {
			return false
		}
	}
	byKind = maps.Clone(byKind)
	if byKind == nil {
		byKind = map[string]authz.Restriction{}
	}
	byKind[req.Restriction] = want
	setRestrictions(r, req.Identity, byKind)

	return true
}

func sameRestriction(a, b authz.Restriction) bool {
	return a.Reason == b.Reason && a.IncidentID == b.IncidentID && a.SetBy == b.SetBy &&
		a.Since.Equal(b.Since) && a.ExpiresAt.Equal(b.ExpiresAt) &&
		a.RequestsPerMinute == b.RequestsPerMinute
}

func setRestrictions(r *authz.RBAC, id string, byKind map[string]authz.Restriction) {
	if r.Restrictions == nil {
		r.Restrictions = map[string]map[string]authz.Restriction{}
	}
	if len(byKind) == 0 {
		delete(r.Restrictions, id)
		return
	}
	r.Restrictions[id] = byKind
}

// auditRestrict persists the event of a restriction request. An unchanged
// request is audited too, because a caller repeating it is worth seeing.
func (s *Service) auditRestrict(ctx context.Context, c Caller, req RestrictRequest,
	changed bool) error {
	typ, action := "policy.restriction_set", "restrict"
	if req.Lift {
		typ, action = "policy.restriction_lifted", "lift_restriction"
	}
	meta := map[string]string{
		"restricted_identity": req.Identity,
		"restriction":         req.Restriction,
		"changed":             strconv.FormatBool(changed),
		"incident_id":         req.IncidentID,
		"reason":              req.Reason,
	}
	if req.RequestsPerMinute > 0 {
		meta["requests_per_minute"] = strconv.Itoa(req.RequestsPerMinute)
	}
	if !req.ExpiresAt.IsZero() {
		meta["expires_at"] = req.ExpiresAt.UTC().Format(time.RFC3339)
	}

	ev := events.SecurityEvent{Type: typ, Action: action, Resource: "identity:" + req.Identity,
		Subject: c.ID, Status: events.StatusSuccess, Severity: events.SeverityMedium,
		Metadata: meta}
	if err := s.d.Events.PublishSync(ctx, ev); err != nil {
		return errs.Unavailable.Wrap(fmt.Errorf("persisting %s event for %q: %w",
			typ, req.Identity, err))
	}

	return nil
}
