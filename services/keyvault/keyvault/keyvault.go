// Package keyvault runs the NodeX keyvault service: provider API keys
// encrypted under per-version data keys, wrapped by a key encryption key,
// stored in JetStream KV, handed out after a policy decision and an audit
// event. Its own main and `nodex dev` both call [Run].
package keyvault

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/trace"

	"github.com/nodexsec/nodex/libs/bus"
	"github.com/nodexsec/nodex/libs/conf"
	"github.com/nodexsec/nodex/services/keyvault/internal/adapters/kvstore"
	"github.com/nodexsec/nodex/services/keyvault/internal/app"
	"github.com/nodexsec/nodex/services/keyvault/internal/config"
	"github.com/nodexsec/nodex/services/keyvault/internal/kek"
	"github.com/nodexsec/nodex/services/keyvault/internal/ports/busport"
	"github.com/nodexsec/nodex/services/keyvault/internal/sealing"
)

// Config configures the service; see the field docs in its package.
type Config = config.Config

// Decider returns access decisions; *authz.Engine implements it.
type Decider = app.Decider

// Auditor persists security events; *events.Publisher implements it.
type Auditor = app.Auditor

// KEK wraps data keys. Run loads a keyring from Config when Deps.KEK is nil;
// a KMS or HSM client can be passed instead.
type KEK = sealing.KEK

// ErrNoKEK is returned by Run when no key encryption key is configured.
var ErrNoKEK = kek.ErrNoKEK

// Deps are the collaborators of [Run]. Client, Decider, Audit and Log are required.
type Deps struct {
	Config Config
	// Client is the keyvault's own bus identity (role service:keyvault).
	// Run drains it on return.
	Client  *bus.Client
	Decider Decider
	// Audit must persist each event before PublishSync returns; an
	// *events.Publisher on the keyvault's Client does.
	Audit Auditor
	Log   *slog.Logger
	// KEK, if set, replaces the keyring named in Config.
	KEK KEK
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Tracer opens a span per request; nil means the global OpenTelemetry
	// tracer provider's "nodex/keyvault" tracer.
	Tracer trace.Tracer
}

// LoadConfig parses keyvault flags from args, then fills the flags not
// given from NODEX_KEYVAULT_* variables read through getenv. Programs that
// own a flag set call Config.RegisterFlags and conf.ApplyEnv instead.
func LoadConfig(args []string, getenv conf.Getenv) (Config, error) {
	return config.Load(args, getenv)
}

// GenerateKEKFile creates a keyring file at path (mode 0600) with one
// random AES-256 key. It fails if path exists, so it never replaces a key
// that wraps stored data. `nodex dev` calls it for .nodex/keyvault.kek.
func GenerateKEKFile(path string) error { return kek.GenerateFile(path) }

// Run serves the keyvault subjects until ctx ends, then drains. It hardens
// the process first and fails without a usable key encryption key.
func Run(ctx context.Context, d Deps) error {
	if d.Client == nil || d.Decider == nil || d.Audit == nil || d.Log == nil {
		return errors.New("keyvault: Run needs Client, Decider, Audit and Log")
	}
	log := d.Log.With("service", "keyvault")
	cfg := d.Config.WithDefaults()
	if err := hardenProcess(); err != nil {
		return err
	}

	svc, err := newService(ctx, d, cfg, log)
	if err != nil {
		return err
	}
	tracer := d.Tracer
	if tracer == nil {
		tracer = otel.Tracer("nodex/keyvault")
	}
	opts := busport.Options{Tracer: tracer, Replays: svc.store, Log: log.With("component", "bus")}
	if err := registerHandlers(d.Client, svc, opts); err != nil {
		return err
	}
	log.InfoContext(ctx, "keyvault started", "config", cfg, "kek_version", svc.kekVersion)

	sweepUntilDone(ctx, svc.app, cfg.SweepInterval, log)

	drainCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if err := d.Client.Drain(drainCtx); err != nil {
		return fmt.Errorf("draining keyvault handlers: %w", err)
	}
	log.InfoContext(ctx, "keyvault stopped")

	return nil
}

type service struct {
	app        *app.Service
	store      *kvstore.Store
	kekVersion int
}

func newService(ctx context.Context, d Deps, cfg Config, log *slog.Logger) (*service, error) {
	keyring := d.KEK
	if keyring == nil {
		if err := cfg.Validate(); err != nil {
			return nil, err
		}
		ring, err := loadKeyring(cfg)
		if err != nil {
			return nil, err
		}
		keyring = ring
	}
	store, err := kvstore.Open(ctx, d.Client.JetStream(), kvstore.Options{Replicas: cfg.Replicas})
	if err != nil {
		return nil, err
	}
	svc := app.New(app.Deps{Store: store, KEK: keyring, Decider: d.Decider, Audit: d.Audit,
		Log: log, Now: d.Now, Grace: cfg.Grace, Limits: limits(cfg)})

	return &service{app: svc, store: store, kekVersion: keyring.CurrentVersion()}, nil
}

func loadKeyring(cfg Config) (*kek.Keyring, error) {
	if cfg.KEK != "" {
		ring, err := kek.Parse(cfg.KEK)
		if err != nil {
			return nil, fmt.Errorf("loading key encryption key from NODEX_KEYVAULT_KEK: %w", err)
		}

		return ring, nil
	}
	ring, err := kek.LoadFile(cfg.KEKFile)
	if err != nil {
		return nil, fmt.Errorf("loading key encryption key: %w", err)
	}

	return ring, nil
}

func limits(cfg Config) app.Limits {
	l := app.Limits{RatePerSecond: cfg.RatePerSecond, Burst: cfg.Burst, DailyQuota: cfg.DailyQuota}
	if l.RatePerSecond < 0 {
		l.RatePerSecond = 0
	}
	if l.DailyQuota < 0 {
		l.DailyQuota = 0
	}

	return l
}

func sweepUntilDone(ctx context.Context, svc *app.Service, every time.Duration, log *slog.Logger) {
	t := time.NewTicker(every)
	defer t.Stop()

	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if err := svc.Sweep(ctx); err != nil && ctx.Err() == nil {
				log.WarnContext(ctx, "retiring expired key versions failed", "error", err)
			}
		}
	}
}
