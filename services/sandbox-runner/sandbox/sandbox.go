// Package sandbox runs the NodeX sandbox-runner service: it executes sealed
// bundles in sandboxes built by sandbox-init, on nodex.v1.sandbox.exec
// (request/reply), the NODEX_SANDBOX_JOBS work queue, and nodex.v1.sandbox.kill.
// Its own main and `nodex dev` both call [Run].
package sandbox

import (
	"context"
	"crypto/ed25519"
	"crypto/hpke"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/nodexsec/nodex/libs/authz"
	"github.com/nodexsec/nodex/libs/bundle"
	"github.com/nodexsec/nodex/libs/bus"
	"github.com/nodexsec/nodex/libs/conf"
	"github.com/nodexsec/nodex/libs/envelope"
	"github.com/nodexsec/nodex/libs/events"
	"github.com/nodexsec/nodex/libs/identity"
	"github.com/nodexsec/nodex/services/sandbox-runner/internal/adapters/bundles"
	"github.com/nodexsec/nodex/services/sandbox-runner/internal/adapters/fingerprints"
	"github.com/nodexsec/nodex/services/sandbox-runner/internal/adapters/receiptkv"
	"github.com/nodexsec/nodex/services/sandbox-runner/internal/app"
	"github.com/nodexsec/nodex/services/sandbox-runner/internal/executor"
	"github.com/nodexsec/nodex/services/sandbox-runner/internal/ports/busport"
)

// Decider returns access decisions; *authz.Engine implements it.
type Decider interface {
	Decide(ctx context.Context, in authz.Input) (authz.Decision, error)
}

var _ Decider = (*authz.Engine)(nil)

// Deps are the collaborators of [Run]; all are required.
type Deps struct {
	Config Config
	// Client is the runner's bus identity (role service:sandbox); Run drains it.
	Client *bus.Client
	// Directory is the verified registry view: it resolves codesec's signing
	// keys and the callers' status.
	Directory envelope.Directory
	// Creds are the runner's own keys: HPKE keys open bundles, the current
	// signing key signs receipts.
	Creds *identity.Credentials
	// Registry delivers registry changes: when an identity is suspended or
	// revoked, its sandboxes are killed and its queued runs cancelled.
	// *identity.View implements it.
	Registry Registry
	Decider  Decider
	Events   *events.Publisher
	Log      *slog.Logger
}

// Registry calls its listeners after every accepted identity update.
type Registry interface {
	OnChange(fn func(identity.Change))
}

var _ Registry = (*identity.View)(nil)

// Run serves the sandbox subjects until ctx ends, then drains. It returns an
// error wrapping [executor.ErrNoSandbox] when the host cannot build the
// sandbox and Config.Insecure is off.
func Run(ctx context.Context, d Deps) error {
	if d.Client == nil || d.Directory == nil || d.Creds == nil || d.Registry == nil ||
		d.Decider == nil || d.Events == nil || d.Log == nil {
		return errors.New("sandbox: Run needs Client, Directory, Creds, Registry, Decider, Events and Log")
	}
	cfg := d.Config.WithDefaults()
	log := d.Log.With("service", "sandbox")
	if err := cfg.Validate(); err != nil {
		return err
	}
	svc, ex, err := newService(ctx, d, cfg, log)
	if ex != nil {
		defer func() {
			if err := ex.Close(); err != nil {
				log.Error("stopping prepared sandboxes", "error", err)
			}
		}()
	}
	if err != nil {
		return err
	}
	watchRegistry(ctx, d.Registry, svc)
	if _, err := busport.Register(ctx, d.Client, svc, busport.Options{
		Admission: cfg.Slots + cfg.Queue, Directory: d.Directory, Log: log.With("component", "bus"),
		Replicas: cfg.Replicas,
	}); err != nil {
		return err
	}
	log.InfoContext(ctx, "sandbox-runner started", "slots", cfg.Slots, "queue", cfg.Queue,
		"insecure", cfg.Insecure, "replicas", max(cfg.Replicas, 1))
	<-ctx.Done()

	drainCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cfg.MaxWallTime+5*time.Second)
	defer cancel()
	if err := d.Client.Drain(drainCtx); err != nil {
		return fmt.Errorf("draining sandbox handlers: %w", err)
	}
	log.InfoContext(ctx, "sandbox-runner stopped")
	return nil
}

// watchRegistry passes every status change to svc until ctx ends. The view
// calls listeners in the order of its watch, so a suspension and a quick
// unsuspension keep their order.
func watchRegistry(ctx context.Context, r Registry, svc *app.Service) {
	r.OnChange(func(c identity.Change) {
		if ctx.Err() != nil || (c.Old != nil && c.Old.Status == c.New.Status) {
			return
		}
		svc.IdentityChanged(ctx, c.New.ID, string(c.New.Status))
	})
}

func newService(ctx context.Context, d Deps, cfg Config, log *slog.Logger) (*app.Service,
	*executor.Executor, error) {
	ceiling := executor.Limits{WallTime: cfg.MaxWallTime, CPUTime: cfg.MaxCPUTime,
		MemoryBytes: cfg.MaxMemoryBytes, Pids: cfg.MaxPids, OutputBytes: cfg.MaxOutputBytes}
	traceSteps := conf.Knob("NODEX_DEBUG_SANDBOX_STEPS", conf.OSEnv()) != ""
	if traceSteps {
		log.Info("debug knobs set", "knobs", conf.Knobs())
	}
	ex, err := executor.New(executor.Config{InitPath: cfg.InitPath, Slots: cfg.Slots,
		HostIDBase: cfg.HostIDBase, Defaults: ceiling, Insecure: cfg.Insecure,
		TraceSteps: traceSteps, Logger: log})
	if err != nil {
		return nil, nil, err
	}
	js := d.Client.JetStream()
	// codesec creates the bundle store and the revocation list; until it has,
	// the runner waits.
	store, err := retry(ctx, log, "binding the bundle store", func() (*bundle.Store, error) {
		return bundles.BindStore(ctx, js)
	})
	if err != nil {
		return nil, ex, err
	}
	watcher, err := retry(ctx, log, "binding the revocation list", func() (*bundles.Revocations, error) {
		return bundles.WatchRevocations(ctx, js)
	})
	if err != nil {
		return nil, ex, err
	}
	context.AfterFunc(ctx, watcher.Stop)
	receipts, err := receiptkv.Open(ctx, js, cfg.Replicas)
	if err != nil {
		return nil, ex, err
	}
	var hpkeKeys []hpke.PrivateKey
	for _, k := range d.Creds.HPKEKeys {
		hpkeKeys = append(hpkeKeys, k.Key)
	}
	signing := d.Creds.CurrentSigningKey()
	svc, err := app.New(app.Deps{
		Bundles: store, RecipientKeys: hpkeKeys, Decider: d.Decider, Events: d.Events,
		Receipts: receipts, Runner: ex, SigningKey: signing.Key, SignerID: d.Creds.ID,
		KeyVersion: signing.Version, Ceiling: ceiling, Log: log,
		Verify: bundle.VerifyOptions{Signer: cfg.CodesecID, Revocations: watcher,
			Keys: registryKeys{d.Directory}},
	})
	if err != nil {
		return nil, ex, err
	}
	go loadFingerprints(ctx, d.Client, svc, log)
	return svc, ex, nil
}

// loadFingerprints fetches keyvault's fingerprints, retrying every ten seconds
// while keyvault is not up. Until it succeeds, output is redacted by provider
// key shapes only, not by exact stored values.
func loadFingerprints(ctx context.Context, c *bus.Client, svc *app.Service, log *slog.Logger) {
	for attempt := 1; ; attempt++ {
		fps, err := fingerprints.Load(ctx, c, log)
		if err == nil {
			svc.SetFingerprints(fps)
			log.InfoContext(ctx, "keyvault fingerprints loaded", "attempt", attempt)
			return
		}
		log.WarnContext(ctx, "keyvault fingerprints unavailable; redacting by key shape only",
			"attempt", attempt, "error", err)
		select {
		case <-ctx.Done():
			return
		case <-time.After(10 * time.Second):
		}
	}
}

// retry calls fn every second until it succeeds or ctx ends, logging each
// failure as a retried step.
func retry[T any](ctx context.Context, log *slog.Logger, step string, fn func() (T, error)) (T, error) {
	for attempt := 1; ; attempt++ {
		v, err := fn()
		if err == nil {
			return v, nil
		}
		log.WarnContext(ctx, "start step failed, retrying", "step", step, "attempt", attempt, "error", err)
		select {
		case <-ctx.Done():
			return v, fmt.Errorf("%s: %w", step, err)
		case <-time.After(time.Second):
		}
	}
}

// registryKeys resolves bundle signing keys from the registry view.
type registryKeys struct{ dir envelope.Directory }

// SigningKey returns a current, uncompromised key of identityID.
func (r registryKeys) SigningKey(ctx context.Context, identityID string, version int) (ed25519.PublicKey, error) {
	k, err := r.dir.SigningKey(ctx, identityID, uint32(version))
	if err != nil {
		return nil, err
	}
	if k.Retired || k.Compromised {
		return nil, fmt.Errorf("signing key %d of %q is retired or compromised", version, identityID)
	}
	return k.Public, nil
}

// VerifyReceipt checks a stored receipt's signature with the runner's public
// key and returns its body. `nodex receipts verify` calls it.
func VerifyReceipt(signed []byte, pub ed25519.PublicKey) (*Receipt, error) {
	return verifyReceipt(signed, pub)
}
