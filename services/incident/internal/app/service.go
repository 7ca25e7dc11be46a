package app

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	mrand "math/rand/v2"
	"strings"
	"time"

	"github.com/nodexsec/nodex/libs/logx"
	"github.com/nodexsec/nodex/services/incident/internal/domain"
)

// Policy is the behaviour an operator configures: the containment playbook
// per type, escalation, retries and the investigation window.
type Policy struct {
	// Playbooks lists the containment actions per incident type.
	Playbooks map[domain.Type][]domain.ActionRule
	// Escalation lengthens expiring containments for repeat offenders.
	Escalation domain.Escalation
	// MaxAttempts bounds automatic retries of a failed action; an operator's
	// contain command retries regardless.
	MaxAttempts int
	// WindowBefore and WindowAfter widen the investigation window around the
	// first and last sighting of the incident's threats.
	WindowBefore time.Duration
	WindowAfter  time.Duration
	// TimelineLimit caps the events an investigation gathers.
	TimelineLimit int
	// LiftRetry is how long the expiry sweep waits before it tries a failed
	// lift again, so a lift that needs an operator is not retried, logged
	// and audited at every sweep. Default 5 minutes.
	LiftRetry time.Duration
}

// Deps are the ports a Service uses. All are required except Now.
type Deps struct {
	Store       Store
	Containment Containment
	Directory   Directory
	Auditor     Auditor
	Events      EventSource
	Log         *slog.Logger
	// Now is the clock; time.Now when nil.
	Now func() time.Time
}

// Service runs the incident use cases. It is safe for concurrent use: every
// change is a compare-and-set on the stored incident, retried on conflict.
type Service struct {
	d      Deps
	policy Policy
	log    *slog.Logger
}

// New returns a Service. It panics on a nil port, which is a wiring mistake.
func New(d Deps, p Policy) *Service {
	if d.Store == nil || d.Containment == nil || d.Directory == nil || d.Auditor == nil ||
		d.Events == nil || d.Log == nil {
		panic("incident/app: New needs Store, Containment, Directory, Auditor, Events and Log")
	}
	if d.Now == nil {
		d.Now = time.Now
	}
	if p.MaxAttempts <= 0 {
		p.MaxAttempts = 5
	}
	if p.LiftRetry <= 0 {
		p.LiftRetry = 5 * time.Minute
	}

	return &Service{d: d, policy: p, log: d.Log.With(logx.KeyComponent, "incidents")}
}

func (s *Service) now() time.Time { return s.d.Now().UTC() }

// HandleThreat opens an incident for th or joins the open incident of the
// same type and identity, then assesses and contains it as far as the
// playbook allows. It returns the incident id. An invalid threat returns an
// error wrapping domain.ErrInvalidThreat, which redelivery cannot fix.
func (s *Service) HandleThreat(ctx context.Context, th *domain.Threat) (string, error) {
	typ, err := th.Validate()
	if err != nil {
		return "", err
	}
	if id, handled, err := s.handledBefore(ctx, th); err != nil || handled {
		return id, err
	}
	id, err := s.openIncident(ctx, typ, th.Subject())
	if err != nil {
		return "", err
	}
	_, err = s.mutate(ctx, id, func(inc *domain.Incident) error {
		if !inc.MergeThreat(th, s.now()) {
			return errUnchanged
		}

		return nil
	})
	if err != nil {
		return id, err
	}
	if err := s.d.Store.RecordThreat(ctx, th.ID, id, th.Revision); err != nil {
		return id, fmt.Errorf("recording threat %s: %w", th.ID, err)
	}
	s.log.InfoContext(ctx, "threat joined incident", logx.KeyIncidentID, id, "threat_id", th.ID,
		"rule_id", th.RuleID)

	return id, s.Advance(ctx, id)
}

// handledBefore reports whether th is a revision that already joined an
// incident which is closed now. Such a delivery, for example a redelivery
// after the close, must not open a second incident. A higher revision of the
// same threat means the attack went on, and it opens a new incident.
func (s *Service) handledBefore(ctx context.Context, th *domain.Threat) (string, bool, error) {
	id, rev, err := s.d.Store.ThreatIncident(ctx, th.ID)
	if errors.Is(err, ErrNotFound) || (err == nil && th.Revision > rev) {
		return "", false, nil
	}
	if err != nil {
		return "", false, fmt.Errorf("reading threat %s: %w", th.ID, err)
	}
	inc, _, err := s.d.Store.Get(ctx, id)
	if errors.Is(err, ErrNotFound) {
		return "", false, nil
	}
	if err != nil {
		return "", false, fmt.Errorf("loading incident %s: %w", id, err)
	}
	if inc.State != domain.StateClosed {
		return "", false, nil
	}
	s.log.InfoContext(ctx, "threat already handled by a closed incident", logx.KeyIncidentID, id,
		"threat_id", th.ID, "revision", th.Revision)

	return id, true, nil
}

// openIncident returns the open incident of (typ, identity), creating it
// when there is none. The slot is claimed before the incident is written, so
// a crash in between leaves a slot whose incident the next threat creates.
// A slot that still names a closed incident, left by a crash during close,
// is released first.
func (s *Service) openIncident(ctx context.Context, typ domain.Type, identity string,
) (string, error) {
	for range maxCASAttempts {
		id, err := s.claimSlot(ctx, typ, identity)
		if err != nil {
			return "", err
		}
		inc, _, err := s.d.Store.Get(ctx, id)
		switch {
		case errors.Is(err, ErrNotFound):
			return id, s.createIncident(ctx, id, typ, identity)
		case err != nil:
			return "", fmt.Errorf("loading incident %s: %w", id, err)
		case inc.State != domain.StateClosed:
			return id, nil
		}
		if err := s.d.Store.ReleaseOpen(ctx, typ, identity, id); err != nil {
			return "", fmt.Errorf("releasing slot of closed incident %s: %w", id, err)
		}
	}

	return "", fmt.Errorf("opening incident of %s for %q: %w", typ, identity, ErrConflict)
}

// claimSlot returns the id in the open slot of (typ, identity), claiming
// the slot for a new id when it is free.
func (s *Service) claimSlot(ctx context.Context, typ domain.Type, identity string) (string, error) {
	id, err := s.d.Store.OpenID(ctx, typ, identity)
	switch {
	case errors.Is(err, ErrNotFound):
		id, err = s.d.Store.ClaimOpen(ctx, typ, identity, newID())
		if err != nil && !errors.Is(err, ErrConflict) {
			return "", fmt.Errorf("claiming open incident of %s for %q: %w", typ, identity, err)
		}
	case err != nil:
		return "", fmt.Errorf("finding open incident of %s for %q: %w", typ, identity, err)
	}

	return id, nil
}

func (s *Service) createIncident(ctx context.Context, id string, typ domain.Type,
	identity string,
) error {
	who := domain.IdentityInfo{ID: identity, Kind: domain.KindUnknown}
	if !strings.HasPrefix(identity, domain.OriginPrefix) {
		var err error
		if who, err = s.d.Directory.Lookup(ctx, identity); err != nil {
			return fmt.Errorf("looking up identity %q: %w", identity, err)
		}
	}
	inc := domain.New(id, typ, who, s.now())
	var err error
	if inc.Offense, err = s.d.Store.NextOffense(ctx, identity); err != nil {
		return fmt.Errorf("counting incidents of %q: %w", identity, err)
	}
	rev, err := s.d.Store.Create(ctx, inc)
	if errors.Is(err, ErrConflict) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("creating incident %s: %w", id, err)
	}
	s.log.InfoContext(ctx, "incident opened", logx.KeyIncidentID, id, "type", typ,
		logx.KeyIdentity, identity)

	return s.flushAudit(ctx, inc, rev)
}

// newID returns "inc-" and 16 random hex digits.
func newID() string {
	b := make([]byte, 8)
	_, _ = rand.Read(b) // crypto/rand.Read never returns an error since Go 1.24.

	return "inc-" + hex.EncodeToString(b)
}

// errUnchanged is returned by a mutate callback that changed nothing, so
// mutate writes nothing.
var errUnchanged = errors.New("unchanged")

// maxCASAttempts bounds the compare-and-set retries of one change. Between
// attempts a writer waits a random time of up to 5ms per attempt, so
// replicas that collide spread out instead of colliding again.
const maxCASAttempts = 20

// backoff waits before compare-and-set attempt n, or until ctx ends.
func backoff(ctx context.Context, n int) error {
	wait := time.Duration(mrand.Int64N(int64(n)*int64(5*time.Millisecond) + 1))
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// mutate loads the incident, applies fn and stores the result with a
// compare-and-set, reloading and reapplying fn when another writer won. It
// then publishes the new history entries as security events. fn must not
// call other services, because it may run several times.
func (s *Service) mutate(ctx context.Context, id string, fn func(*domain.Incident) error,
) (*domain.Incident, error) {
	for attempt := range maxCASAttempts {
		if attempt > 0 {
			if err := backoff(ctx, attempt); err != nil {
				return nil, err
			}
		}
		inc, rev, err := s.d.Store.Get(ctx, id)
		if err != nil {
			return nil, err
		}
		if err := fn(inc); errors.Is(err, errUnchanged) {
			return inc, nil
		} else if err != nil {
			return inc, err
		}
		rev, err = s.d.Store.Update(ctx, inc, rev)
		if errors.Is(err, ErrConflict) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("storing incident %s: %w", id, err)
		}

		return inc, s.flushAudit(ctx, inc, rev)
	}

	return nil, fmt.Errorf("storing incident %s: %w after %d attempts", id, ErrConflict,
		maxCASAttempts)
}
