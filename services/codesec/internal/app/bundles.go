package app

import (
	"context"
	"errors"
	"strings"
	"unicode/utf8"

	"github.com/nodexsec/nodex/libs/authz"
	"github.com/nodexsec/nodex/libs/bundle"
	"github.com/nodexsec/nodex/libs/errs"
	"github.com/nodexsec/nodex/libs/events"
)

// MaxReasonBytes bounds a revocation reason.
const MaxReasonBytes = 512

// RevokeRequest is the body of codesec.revoke.
type RevokeRequest struct {
	BundleID string `json:"bundle_id"`
	Reason   string `json:"reason"`
}

// RevokeResult is the reply to codesec.revoke.
type RevokeResult struct {
	BundleID string `json:"bundle_id"`
	Revoked  bool   `json:"revoked"`
}

// GetRequest is the body of codesec.get.
type GetRequest struct {
	BundleID string `json:"bundle_id"`
}

// GetResult is the reply to codesec.get. Bundle is the wire encoding
// (base64 in JSON); a runner must still call bundle.Verify on it.
type GetResult struct {
	BundleID string `json:"bundle_id"`
	Bundle   []byte `json:"bundle"`
	Revoked  bool   `json:"revoked"`
}

// Revoke puts a bundle on the revocation list after the policy allows the
// caller to revoke it. The audit event must persist before the reply.
func (s *Service) Revoke(ctx context.Context, c Caller, req RevokeRequest,
	traceID string) (*RevokeResult, error) {
	if err := bundle.CheckID(req.BundleID); err != nil {
		return nil, errs.InvalidRequest.Withf("bundle_id %q is invalid; use the id from the "+
			"submit reply", truncate(req.BundleID, 64))
	}
	if len(req.Reason) > MaxReasonBytes || !utf8.ValidString(req.Reason) {
		return nil, errs.InvalidRequest.Withf("reason must be UTF-8 text of at most %d bytes",
			MaxReasonBytes)
	}
	if err := s.authorize(ctx, c, "revoke", req.BundleID, traceID); err != nil {
		return nil, err
	}

	rev := bundle.Revocation{BundleID: req.BundleID, Reason: req.Reason, By: c.ID,
		Time: s.d.Now().UTC()}
	if err := s.d.Revocations.Revoke(ctx, rev); err != nil {
		return nil, errs.Unavailable.Wrap(err)
	}
	ev := events.SecurityEvent{
		Type: "codesec.bundle_revoked", Action: "revoke", Resource: "bundle:" + req.BundleID,
		Subject: c.ID, Status: events.StatusSuccess, Severity: events.SeverityMedium,
		TraceID: traceID, Metadata: map[string]string{"reason": truncate(req.Reason, 256)},
	}
	if err := s.d.Audit.PublishSync(ctx, ev); err != nil {
		// The revocation is kept, because undoing it would let the code run.
		s.d.Log.ErrorContext(ctx, "revocation event lost", "identity", c.ID,
			"bundle_id", req.BundleID, "error", err)
	}
	s.d.Log.InfoContext(ctx, "bundle revoked", "identity", c.ID, "bundle_id", req.BundleID)

	return &RevokeResult{BundleID: req.BundleID, Revoked: true}, nil
}

// Get returns a stored bundle after the policy allows the caller to read
// it, with its current revocation state.
func (s *Service) Get(ctx context.Context, c Caller, req GetRequest, traceID string) (*GetResult, error) {
	if err := bundle.CheckID(req.BundleID); err != nil {
		return nil, errs.InvalidRequest.Withf("bundle_id %q is invalid; use the id from the "+
			"submit reply", truncate(req.BundleID, 64))
	}
	if err := s.authorize(ctx, c, "get", req.BundleID, traceID); err != nil {
		return nil, err
	}

	b, err := s.d.Store.Get(ctx, req.BundleID)
	if errors.Is(err, bundle.ErrNotFound) {
		return nil, errs.NotFound.Withf("bundle %q does not exist", req.BundleID)
	}
	if err != nil {
		return nil, errs.Unavailable.Wrap(err)
	}
	revoked, err := s.d.Revocations.Revoked(ctx, req.BundleID)
	if err != nil {
		return nil, errs.Unavailable.Wrap(err)
	}

	return &GetResult{BundleID: req.BundleID, Bundle: b.Marshal(), Revoked: revoked}, nil
}

func (s *Service) authorize(ctx context.Context, c Caller, action, id, traceID string) error {
	d, err := s.decide(ctx, c, action, authz.Resource{Type: "bundle", ID: id}, nil, traceID)
	if err != nil {
		s.d.Log.ErrorContext(ctx, "policy decision failed", "identity", c.ID, "error", err)
		return errs.Unavailable.Withf("the policy decision failed; retry later").Wrap(err)
	}
	if !d.Allow {
		return errs.AccessDenied.Withf("%s on bundle %q denied: %s", action, id,
			strings.Join(d.Reasons, "; "))
	}

	return nil
}
