// Package monitor runs the NodeX monitor: it consumes every security event
// from NODEX_EVENTS with the durable consumer monitor-detect, evaluates the
// detection rules, publishes threats on nodex.v1.threats.<type> into
// NODEX_THREATS and exports metrics. Its own main and `nodex dev` both call
// [Run]; the query functions serve `nodex events tail` and
// `nodex threats list`.
package monitor

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/metric"

	"github.com/nodexsec/nodex/libs/bus"
	"github.com/nodexsec/nodex/libs/events"
	"github.com/nodexsec/nodex/libs/logx"
	"github.com/nodexsec/nodex/libs/telemetry"
	"github.com/nodexsec/nodex/services/monitor/internal/adapters"
	"github.com/nodexsec/nodex/services/monitor/internal/app"
	"github.com/nodexsec/nodex/services/monitor/internal/config"
	"github.com/nodexsec/nodex/services/monitor/internal/domain"
	"github.com/nodexsec/nodex/services/monitor/internal/ports"
	"github.com/nodexsec/nodex/services/monitor/internal/rules"
)

// Config is the monitor's configuration; see the field docs for defaults.
type Config = config.Config

// Threat is a threat as published on nodex.v1.threats.<type>.
type Threat = domain.Threat

// Event is a security event as stored in NODEX_EVENTS.
type Event = domain.Event

// Stream and consumer names.
const (
	ThreatStream  = adapters.ThreatStream
	ConsumerName  = ports.ConsumerName
	ThreatsPrefix = adapters.ThreatSubjectPrefix
)

// ThreatStreamConfig returns the NODEX_THREATS configuration, for services
// and tests that must create the stream before the monitor runs.
func ThreatStreamConfig(replicas int) jetstream.StreamConfig {
	return adapters.ThreatStreamConfig(replicas)
}

// Deps are the monitor's dependencies.
type Deps struct {
	// Log is required.
	Log *slog.Logger

	// Bus is the monitor's secure client: events are opened with its
	// envelope codec, threats are sealed to the audit role, and the query
	// subject is served. Nil requires Config.InsecurePlainEvents, and then
	// JS must be set.
	Bus *bus.Client

	// JS is the JetStream context; nil takes Bus.JetStream().
	JS jetstream.JetStream

	// MeterProvider receives the metrics; nil makes Run serve its own
	// Prometheus endpoint on Config.MetricsAddr.
	MeterProvider metric.MeterProvider

	// Reload, when set, makes Run reread the rule file on each receive,
	// for example on SIGHUP.
	Reload <-chan struct{}

	// Ready, when set, is called once the windows are rebuilt and the
	// consumer is bound, with the metrics address ("" when Run serves
	// none).
	Ready func(metricsAddr string)
}

// Run starts the monitor and blocks until ctx ends, then drains. It returns
// an error when the configuration or rules are invalid or a dependency is
// unavailable at start.
func Run(ctx context.Context, cfg Config, deps Deps) error {
	if cfg.Self == "" && deps.Bus != nil {
		cfg.Self = deps.Bus.ID()
	}
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return err
	}
	if deps.Log == nil {
		return errors.New("monitor: Deps.Log is nil")
	}
	log := deps.Log.With(logx.KeyService, "monitor")

	js, opener, sink, err := transport(cfg, deps)
	if err != nil {
		return err
	}
	ruleSet, err := rules.Load(cfg.RulesFile)
	if err != nil {
		return err
	}
	if err := checkThreatTTL(cfg, ruleSet); err != nil {
		return err
	}

	det, stopMetrics, metricsAddr, err := build(ctx, cfg, deps, js, opener, sink, ruleSet, log)
	if err != nil {
		return err
	}
	defer stopMetrics()

	if deps.Bus != nil {
		if err := serveQueries(deps.Bus, js, log); err != nil {
			return err
		}
		pub := events.NewPublisher(deps.Bus, deps.Bus.ID(), events.PublisherOptions{})
		defer func() {
			cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cfg.DrainTimeout)
			defer cancel()
			_ = pub.Close(cctx)
		}()
		if err := serveReports(deps.Bus, pub, det, cfg, log); err != nil {
			return err
		}
	}
	go watchRules(ctx, log, cfg, det, deps.Reload)

	log.InfoContext(ctx, "monitor started", "rules", len(ruleSet),
		"rules_file", cfg.RulesFile, "metrics_addr", metricsAddr)
	err = ports.NewConsumer(log, js, det, ports.ConsumerOptions{
		DrainTimeout: cfg.DrainTimeout,
		Ready: func() {
			if deps.Ready != nil {
				deps.Ready(metricsAddr)
			}
		},
	}).Run(ctx)
	log.InfoContext(context.WithoutCancel(ctx), "monitor stopped")

	return err
}

// transport picks the JetStream context, opener and threat sink.
func transport(cfg Config, deps Deps) (jetstream.JetStream, app.Opener, app.ThreatSink, error) {
	js := deps.JS
	if js == nil && deps.Bus != nil {
		js = deps.Bus.JetStream()
	}
	switch {
	case js == nil:
		return nil, nil, nil, errors.New("monitor: Deps.JS and Deps.Bus are nil")
	case deps.Bus != nil:
		return js, adapters.EnvelopeOpener{Codec: deps.Bus.Codec()},
			adapters.BusThreatSink{Client: deps.Bus}, nil
	case cfg.InsecurePlainEvents:
		return js, adapters.PlainOpener{TrustSource: true}, adapters.NewStreamThreatSink(js), nil
	default:
		return nil, nil, nil, errors.New(
			"monitor: no Deps.Bus to open events; set InsecurePlainEvents only for development")
	}
}

func checkThreatTTL(cfg Config, ruleSet []domain.Rule) error {
	for _, r := range ruleSet {
		if r.Dedupe > cfg.ThreatTTL {
			return fmt.Errorf("%w: rule %s dedupe %s exceeds threat TTL %s; raise ThreatTTL",
				config.ErrInvalid, r.ID, r.Dedupe, cfg.ThreatTTL)
		}
	}

	return nil
}

// build ensures the streams and buckets, sets up metrics and returns the
// detector with its open threats restored.
func build(ctx context.Context, cfg Config, deps Deps, js jetstream.JetStream,
	opener app.Opener, sink app.ThreatSink, ruleSet []domain.Rule,
	log *slog.Logger) (*app.Detector, func(), string, error) {
	if err := ensureEventStream(ctx, js); err != nil {
		return nil, nil, "", err
	}
	if _, err := adapters.EnsureThreatStream(ctx, js, cfg.Replicas); err != nil {
		return nil, nil, "", err
	}
	seen, err := adapters.NewKVSeenStore(ctx, js, cfg.SeenTTL, cfg.Replicas)
	if err != nil {
		return nil, nil, "", err
	}
	open, err := adapters.NewKVThreatStore(ctx, js, cfg.ThreatTTL, cfg.Replicas)
	if err != nil {
		return nil, nil, "", err
	}

	mp, stop, addr, err := meterProvider(ctx, cfg, deps)
	if err != nil {
		return nil, nil, "", err
	}
	metrics, err := ports.NewMetrics(mp.Meter("github.com/nodexsec/nodex/services/monitor"))
	if err != nil {
		stop()
		return nil, nil, "", err
	}

	det, err := app.NewDetector(log, ruleSet, opener, sink, seen, open, metrics,
		app.DetectorOptions{
			Self: cfg.Self, FloodRatePerSecond: cfg.FloodRatePerSecond,
			FloodBurst: cfg.FloodBurst, FloodReportInterval: cfg.FloodReportInterval,
		})
	if err == nil {
		var n int
		n, err = det.Restore(ctx)
		log.InfoContext(ctx, "open threats restored", "count", n)
	}
	if err != nil {
		stop()
		return nil, nil, "", err
	}

	return det, stop, addr, nil
}

// ensureEventStream creates NODEX_EVENTS with the libs/events defaults when
// it does not exist, and leaves an existing stream's sizing alone.
func ensureEventStream(ctx context.Context, js jetstream.JetStream) error {
	_, err := js.Stream(ctx, events.StreamName)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		_, err = events.EnsureStream(ctx, js, events.StreamOptions{})
	}
	if err != nil {
		return fmt.Errorf("looking up stream %s: %w", events.StreamName, err)
	}

	return nil
}

func meterProvider(ctx context.Context, cfg Config,
	deps Deps) (metric.MeterProvider, func(), string, error) {
	if deps.MeterProvider != nil {
		return deps.MeterProvider, func() {}, "", nil
	}
	addr := cfg.MetricsAddr
	if addr == config.MetricsDisabled {
		addr = ""
	}
	p, err := telemetry.Setup(ctx, telemetry.Config{ServiceName: "monitor", MetricsAddr: addr})
	if err != nil {
		return nil, nil, "", fmt.Errorf("setting up metrics: %w", err)
	}
	stop := func() {
		sctx, cancel := context.WithTimeout(context.Background(), cfg.DrainTimeout)
		defer cancel()
		_ = p.Shutdown(sctx)
	}

	return p.MeterProvider(), stop, p.MetricsAddr(), nil
}

// watchRules rereads the rule file every ReloadInterval and on each receive
// from reload, and swaps the rules when the file changed and is valid.
func watchRules(ctx context.Context, log *slog.Logger, cfg Config, det *app.Detector,
	reload <-chan struct{}) {
	if cfg.RulesFile == "" && reload == nil {
		return
	}
	tick := time.NewTicker(cfg.ReloadInterval)
	defer tick.Stop()
	last := fmt.Sprint(det.Rules())
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		case <-reload:
		}
		ruleSet, err := rules.Load(cfg.RulesFile)
		if err == nil {
			err = checkThreatTTL(cfg, ruleSet)
		}
		if err != nil {
			log.WarnContext(ctx, "rules not reloaded, keeping the rules in force", logx.Err(err))
			continue
		}
		if fmt.Sprint(ruleSet) == last {
			continue
		}
		if err := det.Reload(ruleSet); err != nil {
			log.WarnContext(ctx, "rules not reloaded, keeping the rules in force", logx.Err(err))
			continue
		}
		last = fmt.Sprint(ruleSet)
		log.InfoContext(ctx, "rules reloaded", "rules", len(ruleSet), "rules_file", cfg.RulesFile)
	}
}
