// Package incident runs the NodeX incident service: it turns monitor's
// threats into incidents, assesses and contains them per a configurable
// playbook, gathers the related events, and serves the operator's commands
// and reports. Its own main and `nodex dev` both call [Run].
package incident

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/nodexsec/nodex/libs/bus"
	"github.com/nodexsec/nodex/libs/identity"
	"github.com/nodexsec/nodex/libs/logx"
	"github.com/nodexsec/nodex/services/incident/internal/adapters/containment"
	"github.com/nodexsec/nodex/services/incident/internal/adapters/eventsource"
	"github.com/nodexsec/nodex/services/incident/internal/adapters/kvstore"
	"github.com/nodexsec/nodex/services/incident/internal/adapters/registry"
	"github.com/nodexsec/nodex/services/incident/internal/app"
	"github.com/nodexsec/nodex/services/incident/internal/config"
	"github.com/nodexsec/nodex/services/incident/internal/ports"
)

// Config configures the service; see the field docs in its package.
type Config = config.Config

// Playbook is the containment configuration per incident type.
type Playbook = config.Playbook

// DefaultPlaybook returns the shipped containment playbook.
func DefaultPlaybook() Playbook { return config.DefaultPlaybook() }

// Auditor persists security events before returning; *events.Publisher
// implements it.
type Auditor = app.Auditor

// Authorizer decides operator requests; *authz.Engine implements it.
type Authorizer = ports.Authorizer

// Containment performs containment actions. Run builds one over the bus
// and the registry when Deps.Containment is nil.
type Containment = app.Containment

// Directory reads identities. Run builds one over Deps.Registry when
// Deps.Directory is nil.
type Directory = app.Directory

// Deps are what Run needs. Client, Audit, Authorizer and Log are required,
// and so are Registry and Authority unless Directory and Containment
// replace them.
type Deps struct {
	Config Config
	// Client is the incident service's own bus identity (role
	// service:incident, member of the role that events are sealed to). Run
	// drains it on return.
	Client *bus.Client
	// Audit must persist each event before PublishSync returns; an
	// *events.Publisher on Client does.
	Audit      Auditor
	Authorizer Authorizer
	// Registry is the watched identity registry.
	Registry *identity.View
	// Authority signs status downgrades, which is how containment
	// suspends an identity without the root key.
	Authority *identity.AuthorityWriter
	// Admin, if set, lets lifts and expiries raise a suspended identity
	// again. Without it, such a lift fails with the `nodex agent unsuspend`
	// command an operator runs instead.
	Admin *identity.Admin
	// Containment and Directory replace the adapters built from Client,
	// Registry and Authority.
	Containment Containment
	Directory   Directory
	Log         *slog.Logger
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Run consumes threats and serves the operator subjects until ctx ends,
// then drains. It resumes every incident that is not closed at start, and
// lifts expired containments periodically.
func Run(ctx context.Context, d Deps) error {
	if d.Client == nil || d.Audit == nil || d.Authorizer == nil || d.Log == nil {
		return errors.New("incident: Run needs Client, Audit, Authorizer and Log")
	}
	log := d.Log.With(logx.KeyService, "incident")
	cfg, err := d.Config.WithDefaults()
	if err != nil {
		return err
	}
	if err := cfg.Validate(); err != nil {
		return err
	}
	svc, err := newService(ctx, d, cfg, log)
	if err != nil {
		return err
	}
	if err := ports.NewOperator(svc, d.Authorizer, log).Register(d.Client); err != nil {
		return err
	}
	if err := consumeThreats(ctx, d.Client, cfg, svc, log); err != nil {
		return err
	}
	log.InfoContext(ctx, "incident started", "config", cfg.String())

	sweepUntilDone(ctx, svc, cfg, log)

	drainCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if err := d.Client.Drain(drainCtx); err != nil {
		return fmt.Errorf("draining incident handlers: %w", err)
	}
	log.InfoContext(ctx, "incident stopped")

	return nil
}

func newService(ctx context.Context, d Deps, cfg Config, log *slog.Logger) (*app.Service, error) {
	js := d.Client.JetStream()
	store, err := kvstore.Open(ctx, js, cfg.Bucket, cfg.Replicas)
	if err != nil {
		return nil, err
	}
	dir, contain := d.Directory, d.Containment
	if dir == nil || contain == nil {
		if d.Registry == nil || d.Authority == nil {
			return nil, errors.New("incident: Run needs Registry and Authority, or both " +
				"Directory and Containment")
		}
	}
	if dir == nil {
		dir = registry.NewDirectory(d.Registry)
	}
	if contain == nil {
		b := containment.New(d.Client, d.Authority, d.Registry, d.Audit)
		b.TightenedLimit = cfg.TightenedRequestsPerMinute
		if d.Admin != nil {
			b.Upgrade = d.Admin
		}
		contain = b
	}
	rules, esc := cfg.Playbook.Rules()

	return app.New(app.Deps{
		Store: store, Containment: contain, Directory: dir, Auditor: d.Audit,
		Events: eventsource.New(js, cfg.EventsStream, eventsource.OpenEnvelope(d.Client.Codec()),
			log),
		Log: log, Now: d.Now,
	}, app.Policy{
		Playbooks: rules, Escalation: esc, MaxAttempts: cfg.MaxAttempts,
		WindowBefore: cfg.WindowBefore, WindowAfter: cfg.WindowAfter,
		TimelineLimit: cfg.TimelineLimit,
	}), nil
}

// threatAckWait bounds the handling of one threat before JetStream
// redelivers it.
const threatAckWait = 2 * time.Minute

// consumeThreats binds the durable consumer. The threats stream belongs to
// monitor. When it does not exist yet, Run creates it with the same name and
// subjects, and monitor's own configuration replaces it later.
func consumeThreats(ctx context.Context, c *bus.Client, cfg Config, svc *app.Service,
	log *slog.Logger,
) error {
	js := c.JetStream()
	if _, err := js.Stream(ctx, cfg.ThreatsStream); errors.Is(err, jetstream.ErrStreamNotFound) {
		_, err = js.CreateStream(ctx, jetstream.StreamConfig{
			Name: cfg.ThreatsStream, Subjects: []string{ports.ThreatSubjectPrefix + ">"},
			Storage: jetstream.FileStorage, Replicas: max(cfg.Replicas, 1),
		})
		if err != nil && !errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
			return fmt.Errorf("creating stream %s: %w", cfg.ThreatsStream, err)
		}
	} else if err != nil {
		return fmt.Errorf("reading stream %s: %w", cfg.ThreatsStream, err)
	}
	err := c.Consume(ctx, bus.ConsumeConfig{
		Stream: cfg.ThreatsStream,
		Consumer: jetstream.ConsumerConfig{
			Durable: cfg.Consumer, FilterSubject: ports.ThreatSubjectPrefix + ">",
			DeliverPolicy: jetstream.DeliverAllPolicy,
			// One threat may wait for several containment requests, each
			// bounded by the bus request timeout (5s by default).
			AckWait: threatAckWait,
		},
		NakDelay: cfg.NakDelay,
	}, ports.NewThreats(svc, log).Handle)
	if err != nil {
		return err
	}
	log.InfoContext(ctx, "consumer bound", logx.KeyStream, cfg.ThreatsStream,
		logx.KeyConsumer, cfg.Consumer)

	return nil
}

// sweepUntilDone resumes incidents and lifts expired containments until ctx
// ends. Errors are logged by the service and retried at the next tick.
func sweepUntilDone(ctx context.Context, svc *app.Service, cfg Config, log *slog.Logger) {
	if err := svc.Resume(ctx); err != nil {
		log.WarnContext(ctx, "resuming incidents at start", logx.KeyError, err)
	}
	resume := time.NewTicker(cfg.ResumeInterval)
	defer resume.Stop()
	expiry := time.NewTicker(cfg.ExpiryInterval)
	defer expiry.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-resume.C:
			if err := svc.Resume(ctx); err != nil {
				log.WarnContext(ctx, "resuming incidents", logx.KeyError, err)
			}
		case <-expiry.C:
			if err := svc.LiftExpired(ctx); err != nil {
				log.WarnContext(ctx, "lifting expired containments", logx.KeyError, err)
			}
		}
	}
}
