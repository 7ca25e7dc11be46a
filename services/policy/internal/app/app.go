// Package app holds the policy service's use cases: remote decisions, role
// and binding edits, and testing and activating policy sets. It declares the
// store and decider it needs; adapters and the bus layer supply them.
package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/nodexsec/nodex/libs/authz"
	"github.com/nodexsec/nodex/libs/errs"
)

// ErrConflict is returned by a [Store] write whose expected revision is no
// longer the latest.
var ErrConflict = errors.New("policy: revision conflict")

// ErrNotFound is returned by a [Store] read of a key that does not exist.
var ErrNotFound = errors.New("policy: not found")

// Store reads and writes the policy bucket.
type Store interface {
	// RBAC returns the role data and its revision, or ErrNotFound.
	RBAC(ctx context.Context) (authz.RBAC, uint64, error)
	// UpdateRBAC stores r if the stored revision is still rev (0: the key
	// must not exist yet), returning the new revision or ErrConflict.
	UpdateRBAC(ctx context.Context, r authz.RBAC, rev uint64) (uint64, error)
	// PutPolicy stores set as the active policy set and returns its revision.
	PutPolicy(ctx context.Context, set authz.PolicySet) (uint64, error)
}

// Decider makes access decisions; [authz.Engine] implements it.
type Decider interface {
	Decide(ctx context.Context, in authz.Input) (authz.Decision, error)
	Revision() string
}

// Caller is the authenticated sender of a request.
type Caller struct {
	ID    string
	Kind  string
	Roles []string
}

// Deps are the Service's collaborators. All are required except Events and Now.
type Deps struct {
	Engine Decider
	Store  Store
	Log    *slog.Logger
	// TestTimeout bounds one Rego test rule.
	TestTimeout time.Duration
	// MaxPolicyBytes bounds a pushed set.
	MaxPolicyBytes int
	// ActivationWait bounds the wait for a pushed set to become active.
	ActivationWait time.Duration
	// Events persists the audit event of every restriction request. Nil
	// makes nodex.v1.policy.restrict reply unavailable.
	Events EventSink
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Service implements the policy service's requests.
type Service struct {
	d      Deps
	log    *slog.Logger
	grants grantCache
}

// New returns a Service. It panics on a missing dependency, which is a
// programming error.
func New(d Deps) *Service {
	if d.Engine == nil || d.Store == nil || d.Log == nil {
		panic("policy/app: New needs Engine, Store and Log")
	}
	if d.Now == nil {
		d.Now = time.Now
	}

	return &Service{d: d, log: d.Log.With("component", "app")}
}

// authorize decides whether c may perform action on the policy resource id. The caller's status is active because libs/bus delivers no
// request from a suspended or revoked sender.
func (s *Service) authorize(ctx context.Context, c Caller, action, id string) error {
	d, err := s.d.Engine.Decide(ctx, authz.Input{
		Subject: authz.Subject{
			ID: c.ID, Kind: c.Kind, Roles: c.Roles, Status: authz.StatusActive,
		},
		Action:   action,
		Resource: authz.Resource{Type: "policy", ID: id},
		Context:  authz.Context{Time: s.d.Now()},
	})
	if err != nil {
		s.log.WarnContext(ctx, "authorization failed, denying",
			"identity", c.ID, "action", action, "decision_id", d.ID, "error", err)
	}
	if err == nil && d.Allow {
		return nil
	}

	return errs.AccessDenied.Withf("policy %s denied for %s (decision %s)", action, c.ID, d.ID)
}

// updateRBAC applies change to the stored role data with compare-and-set,
// retrying when another writer got there first.
func (s *Service) updateRBAC(ctx context.Context,
	change func(r *authz.RBAC) error) (authz.RBAC, uint64, error) {
	const attempts = 5
	for attempt := 1; ; attempt++ {
		r, rev, err := s.d.Store.RBAC(ctx)
		if errors.Is(err, ErrNotFound) {
			r, rev, err = authz.RBAC{}, 0, nil
		}
		if err != nil {
			return authz.RBAC{}, 0, errs.Unavailable.Wrap(fmt.Errorf("reading roles: %w", err))
		}
		if r.Roles == nil {
			r.Roles = map[string]authz.Role{}
		}
		if r.Bindings == nil {
			r.Bindings = map[string][]string{}
		}

		if err := change(&r); err != nil {
			return authz.RBAC{}, 0, err
		}
		if err := r.Validate(); err != nil {
			return authz.RBAC{}, 0, errs.InvalidRequest.Withf("%s", err.Error())
		}

		newRev, err := s.d.Store.UpdateRBAC(ctx, r, rev)
		if err == nil {
			return r, newRev, nil
		}
		if !errors.Is(err, ErrConflict) || attempt == attempts {
			return authz.RBAC{}, 0, errs.Unavailable.Wrap(fmt.Errorf("storing roles: %w", err))
		}
		s.log.WarnContext(ctx, "role data changed concurrently, retrying", "attempt", attempt)
	}
}
