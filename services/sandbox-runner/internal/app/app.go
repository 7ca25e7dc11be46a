// Package app holds the sandbox-runner's use cases: run a sealed bundle (verify,
// decide, open, clamp, run, scan, sign a receipt, report violations) and kill
// the runs of a bundle or an agent.
package app

import (
	"context"
	"crypto/ed25519"
	"crypto/hpke"
	"errors"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/nodexsec/nodex/libs/authz"
	"github.com/nodexsec/nodex/libs/bundle"
	"github.com/nodexsec/nodex/libs/events"
	"github.com/nodexsec/nodex/services/sandbox-runner/internal/executor"
	"github.com/nodexsec/nodex/services/sandbox-runner/internal/receipt"
	"github.com/nodexsec/nodex/services/sandbox-runner/internal/scan"
)

// BundleSource returns a stored bundle; *bundle.Store implements it.
type BundleSource interface {
	Get(ctx context.Context, id string) (*bundle.Bundle, error)
}

// Decider returns access decisions; *authz.Engine implements it.
type Decider interface {
	Decide(ctx context.Context, in authz.Input) (authz.Decision, error)
}

// EventSink publishes security events; *events.Publisher implements it.
type EventSink interface {
	Publish(ctx context.Context, ev events.SecurityEvent)
	PublishSync(ctx context.Context, ev events.SecurityEvent) error
}

// ReceiptStore keeps signed receipts by run id.
type ReceiptStore interface {
	Put(ctx context.Context, runID string, s *receipt.Signed) error
}

// Runner runs and kills sandboxes; *executor.Executor implements it.
type Runner interface {
	Run(ctx context.Context, spec executor.Spec) (executor.Result, error)
	Kill(key, value string) int
}

var _ Runner = (*executor.Executor)(nil)

// Deps are the collaborators of a [Service]; all but Fingerprints and Now are
// required.
type Deps struct {
	Bundles BundleSource
	Verify  bundle.VerifyOptions
	// RecipientKeys are the runner's HPKE private keys, every version still in
	// use; a bundle names the one it was sealed to.
	RecipientKeys []hpke.PrivateKey
	Decider       Decider
	Events        EventSink
	Receipts      ReceiptStore
	Runner        Runner
	// SigningKey signs receipts as SignerID with key version KeyVersion.
	SigningKey ed25519.PrivateKey
	SignerID   string
	KeyVersion int
	// Ceiling bounds every limit a bundle requests; a zero field leaves that
	// limit to the executor's default, which is the ceiling then.
	Ceiling executor.Limits
	// Fingerprints holds keyvault's fingerprints; nil scans by pattern only.
	Fingerprints *scan.Fingerprints
	Log          *slog.Logger
	Now          func() time.Time
}

// Service implements the use cases.
type Service struct {
	d            Deps
	log          *slog.Logger
	fingerprints atomic.Pointer[scan.Fingerprints]
	flights      *flights
}

// New returns a Service, or an error naming a missing dependency.
func New(d Deps) (*Service, error) {
	if d.Bundles == nil || d.Decider == nil || d.Events == nil || d.Receipts == nil ||
		d.Runner == nil || len(d.RecipientKeys) == 0 || d.SigningKey == nil || d.Log == nil {
		return nil, errors.New("app: New needs Bundles, Decider, Events, Receipts, Runner, " +
			"RecipientKeys, SigningKey and Log")
	}
	if d.Now == nil {
		d.Now = time.Now
	}
	s := &Service{d: d, log: d.Log.With("component", "app"), flights: newFlights()}
	s.fingerprints.Store(d.Fingerprints)
	return s, nil
}

// SetFingerprints replaces the keyvault fingerprints used for redaction, for
// a runner that obtained them after it started.
func (s *Service) SetFingerprints(f *scan.Fingerprints) { s.fingerprints.Store(f) }

// Caller is the authenticated identity that sent a request, with its status
// in the registry.
type Caller struct {
	ID     string
	Kind   string
	Roles  []string
	Status string
}

func (c Caller) subject() authz.Subject {
	return authz.Subject{ID: c.ID, Kind: c.Kind, Roles: c.Roles, Status: c.Status}
}

// recipientKey returns the private key whose public key id matches keyID.
func (s *Service) recipientKey(keyID string) (hpke.PrivateKey, bool) {
	for _, k := range s.d.RecipientKeys {
		if bundle.RecipientKeyID(k.PublicKey()) == keyID {
			return k, true
		}
	}
	return nil, false
}
