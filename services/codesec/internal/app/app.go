// Package app holds codesec's use cases: submit (validate, scan, decide,
// seal, store), revoke and get. It declares the interfaces it needs, so the
// policy engine, event publisher and stores are passed in.
package app

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/google/uuid"

	"github.com/nodexsec/nodex/libs/authz"
	"github.com/nodexsec/nodex/libs/bundle"
	"github.com/nodexsec/nodex/libs/events"
)

// Decider returns access decisions; *authz.Engine implements it. An error
// or a zero Decision denies.
type Decider interface {
	Decide(ctx context.Context, in authz.Input) (authz.Decision, error)
}

// Auditor publishes security events; *events.Publisher implements it.
type Auditor interface {
	// Publish queues an event without waiting for the stream.
	Publish(ctx context.Context, ev events.SecurityEvent)
	// PublishSync returns once the event is persisted.
	PublishSync(ctx context.Context, ev events.SecurityEvent) error
}

// Scanner finds risky constructs; *scan.Scanner implements it.
type Scanner interface {
	Scan(lang string, files []bundle.File) ([]bundle.Finding, error)
}

// BundleStore keeps sealed bundles; *bundle.Store implements it.
type BundleStore interface {
	Put(ctx context.Context, id string, b *bundle.Bundle) error
	Get(ctx context.Context, id string) (*bundle.Bundle, error)
}

// RevocationList is the list of revoked bundles; *bundle.Revocations
// implements it.
type RevocationList interface {
	Revoke(ctx context.Context, rev bundle.Revocation) error
	Revoked(ctx context.Context, bundleID string) (bool, error)
}

var (
	_ Decider        = (*authz.Engine)(nil)
	_ Auditor        = (*events.Publisher)(nil)
	_ BundleStore    = (*bundle.Store)(nil)
	_ RevocationList = (*bundle.Revocations)(nil)
)

// DefaultBundleTTL is how long a sealed bundle may run when Deps.BundleTTL
// is zero.
const DefaultBundleTTL = time.Hour

// Deps are the collaborators of [New]. All but Now, NewID and BundleTTL are
// required.
type Deps struct {
	Scanner     Scanner
	Decider     Decider
	Audit       Auditor
	Store       BundleStore
	Revocations RevocationList
	// Signer is codesec's identity and Ed25519 signing key.
	Signer bundle.Signer
	// Recipient returns the sandbox-runner's HPKE (MLKEM768-X25519) public
	// key; bundle.RegistryRecipient reads it from the registry.
	Recipient bundle.RecipientSource
	Log       *slog.Logger
	// BundleTTL is the time from sealing to expiry; zero means
	// DefaultBundleTTL.
	BundleTTL time.Duration
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// NewID returns a bundle id; nil means a random UUIDv7.
	NewID func() string
}

// Service runs the use cases. It is safe for concurrent use.
type Service struct {
	d Deps
}

// New returns a Service. It panics when a required dependency is missing,
// which is a programming error in the caller.
func New(d Deps) *Service {
	if d.Scanner == nil || d.Decider == nil || d.Audit == nil || d.Store == nil ||
		d.Revocations == nil || d.Signer.Key == nil || d.Signer.ID == "" ||
		d.Recipient == nil || d.Log == nil {
		panic("codesec/app: New needs Scanner, Decider, Audit, Store, Revocations, " +
			"Signer, Recipient and Log")
	}
	if d.BundleTTL <= 0 {
		d.BundleTTL = DefaultBundleTTL
	}
	if d.Now == nil {
		d.Now = time.Now
	}
	if d.NewID == nil {
		d.NewID = func() string { return uuid.Must(uuid.NewV7()).String() }
	}

	return &Service{d: d}
}

// Caller is the authenticated identity behind a request, as the bus
// reports it after the envelope checks.
type Caller struct {
	ID    string
	Kind  string
	Roles []string
}

// decide requests a policy decision on caller acting on a resource. The bus has
// already rejected suspended and revoked senders, so an authenticated
// caller is active. Any error denies.
func (s *Service) decide(ctx context.Context, c Caller, action string, res authz.Resource,
	findings []bundle.Finding, traceID string) (authz.Decision, error) {
	in := authz.Input{
		Subject:  authz.Subject{ID: c.ID, Kind: c.Kind, Roles: c.Roles, Status: authz.StatusActive},
		Action:   action,
		Resource: res,
		Context:  authz.Context{Time: s.d.Now(), TraceID: traceID, Findings: policyFindings(findings)},
	}
	d, err := s.d.Decider.Decide(ctx, in)
	if err != nil {
		return authz.Decision{ID: d.ID, Reasons: d.Reasons}, fmt.Errorf("deciding %s on %s: %w",
			action, res.Type, err)
	}

	return d, nil
}

func policyFindings(findings []bundle.Finding) []authz.Finding {
	out := make([]authz.Finding, 0, len(findings))
	for _, f := range findings {
		out = append(out, authz.Finding{RuleID: f.RuleID, Severity: f.Severity, Line: f.Line})
	}

	return out
}
