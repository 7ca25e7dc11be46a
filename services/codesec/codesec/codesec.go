// Package codesec runs the NodeX codesec service. It validates and scans
// agent code, requests a policy decision, and seals accepted code into
// signed, encrypted bundles that only the sandbox-runner can open. Its own main and
// `nodex dev` both call [Run].
package codesec

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"time"

	"github.com/nodexsec/nodex/libs/bundle"
	"github.com/nodexsec/nodex/libs/bus"
	"github.com/nodexsec/nodex/libs/identity"
	"github.com/nodexsec/nodex/services/codesec/internal/app"
	"github.com/nodexsec/nodex/services/codesec/internal/domain"
	"github.com/nodexsec/nodex/services/codesec/internal/ports"
	"github.com/nodexsec/nodex/services/codesec/internal/scan"
)

// Request subjects that Run serves, in the queue group "codesec".
const (
	SubjectSubmit = ports.SubjectSubmit
	SubjectRevoke = ports.SubjectRevoke
	SubjectGet    = ports.SubjectGet
	// Role is the role that serves requests to codesec.
	Role = ports.Role
)

// Maximum run limits a submission may request; a larger value is rejected
// with invalid_request. The sandbox-runner lowers a limit further to its
// own configured maximum.
const (
	MaxWallTimeMillis = domain.MaxWallTimeMillis
	MaxMemoryBytes    = domain.MaxMemoryBytes
)

// Defaults for zero Config fields.
const (
	DefaultBundleTTL    = app.DefaultBundleTTL
	DefaultSandboxID    = "sandbox"
	DefaultDrainTimeout = 10 * time.Second
)

// Config configures the service. Zero fields take their defaults.
type Config struct {
	// BundleTTL is how long a sealed bundle may run after sealing.
	BundleTTL time.Duration
	// SandboxID is the identity whose current HPKE key bundles are sealed
	// to, read from the registry at each submission.
	SandboxID string
	// DrainTimeout bounds the drain of in-flight requests at shutdown.
	DrainTimeout time.Duration
	// Replicas is the replica count of the bundle store and the
	// revocation list when codesec creates them; zero means 1. A store
	// that already has more replicas keeps them, so a restart never
	// lowers replication.
	Replicas int
}

// RegisterFlags binds the Config fields to flags; conf.ApplyEnv gives each
// an environment twin NODEX_CODESEC_<FLAG>.
func (c *Config) RegisterFlags(fs *flag.FlagSet) {
	fs.DurationVar(&c.BundleTTL, "bundle-ttl", DefaultBundleTTL,
		"time from sealing to expiry of a code bundle")
	fs.StringVar(&c.SandboxID, "sandbox-identity", DefaultSandboxID,
		"identity id of the sandbox-runner that bundles are sealed to")
	fs.DurationVar(&c.DrainTimeout, "drain-timeout", DefaultDrainTimeout,
		"time allowed for in-flight requests at shutdown")
	fs.IntVar(&c.Replicas, "replicas", 0,
		"replicas of the bundle store and the revocation list, 1 to 5 (default 1)")
}

// WithDefaults returns c with zero fields set to their defaults.
func (c Config) WithDefaults() Config {
	if c.BundleTTL == 0 {
		c.BundleTTL = DefaultBundleTTL
	}
	if c.SandboxID == "" {
		c.SandboxID = DefaultSandboxID
	}
	if c.DrainTimeout == 0 {
		c.DrainTimeout = DefaultDrainTimeout
	}

	return c
}

// Validate reports a setting that cannot work.
func (c Config) Validate() error {
	if c.BundleTTL < time.Second || c.BundleTTL > 7*24*time.Hour {
		return fmt.Errorf("codesec: bundle TTL %s is out of range; use 1s to 168h", c.BundleTTL)
	}
	if err := identity.ValidateID(c.SandboxID); err != nil {
		return fmt.Errorf("codesec: sandbox identity %q: %w", c.SandboxID, err)
	}
	if c.Replicas < 0 || c.Replicas > 5 {
		return fmt.Errorf("codesec: replicas %d is out of range; use 1 to 5", c.Replicas)
	}

	return nil
}

// Decider returns access decisions; *authz.Engine implements it.
type Decider = app.Decider

// Auditor publishes security events; *events.Publisher implements it.
type Auditor = app.Auditor

// Deps are the collaborators of [Run]. All but Recipient and Now are
// required.
type Deps struct {
	Config Config
	// Client is codesec's own bus identity (role service:codesec). Run
	// drains it on return.
	Client  *bus.Client
	Decider Decider
	// Audit must persist events passed to PublishSync before it returns; an
	// *events.Publisher on codesec's Client does.
	Audit Auditor
	// Creds are codesec's credentials; their current Ed25519 signing key
	// signs bundles.
	Creds *identity.Credentials
	// View is the identity registry, for the sandbox-runner's HPKE key.
	View *identity.View
	Log  *slog.Logger
	// Recipient, if set, replaces the registry lookup of the sandbox key.
	Recipient bundle.RecipientSource
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Run serves the codesec subjects until ctx ends, then drains.
func Run(ctx context.Context, d Deps) error {
	if d.Client == nil || d.Decider == nil || d.Audit == nil || d.Creds == nil || d.Log == nil ||
		(d.View == nil && d.Recipient == nil) {
		return errors.New("codesec: Run needs Client, Decider, Audit, Creds, View and Log")
	}
	cfg := d.Config.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return err
	}
	log := d.Log.With("service", "codesec")

	svc, err := newService(ctx, d, cfg, log)
	if err != nil {
		return err
	}
	if err := ports.New(svc, log).Register(d.Client); err != nil {
		return fmt.Errorf("registering codesec handlers: %w", err)
	}
	log.InfoContext(ctx, "codesec started", "bundle_ttl", cfg.BundleTTL,
		"sandbox_identity", cfg.SandboxID, "signer", d.Creds.ID, "replicas", max(cfg.Replicas, 1))

	<-ctx.Done()
	drainCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cfg.DrainTimeout)
	defer cancel()
	if err := d.Client.Drain(drainCtx); err != nil {
		return fmt.Errorf("draining codesec handlers: %w", err)
	}
	log.InfoContext(ctx, "codesec stopped")

	return nil
}

func newService(ctx context.Context, d Deps, cfg Config, log *slog.Logger) (*app.Service, error) {
	js := d.Client.JetStream()
	store, err := bundle.OpenStore(ctx, js, cfg.Replicas)
	if err != nil {
		return nil, err
	}
	revocations, err := bundle.OpenRevocations(ctx, js, cfg.Replicas)
	if err != nil {
		return nil, err
	}
	scanner, err := scan.NewDefault()
	if err != nil {
		return nil, fmt.Errorf("loading codesec rules: %w", err)
	}
	recipient := d.Recipient
	if recipient == nil {
		recipient = bundle.RegistryRecipient{View: d.View, ID: cfg.SandboxID}
	}

	return app.New(app.Deps{
		Scanner: scanner, Decider: d.Decider, Audit: d.Audit, Store: store,
		Revocations: revocations, Signer: bundle.SignerFromCreds(d.Creds), Recipient: recipient,
		Log: log, BundleTTL: cfg.BundleTTL, Now: d.Now,
	}), nil
}
