// Command monitor runs the NodeX monitor service on its own: it connects to
// NATS as the monitor identity, consumes NODEX_EVENTS and publishes threats.
// `nodex dev` runs the same service in process.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/nodexsec/nodex/libs/broker"
	"github.com/nodexsec/nodex/libs/bus"
	"github.com/nodexsec/nodex/libs/conf"
	"github.com/nodexsec/nodex/libs/envelope"
	"github.com/nodexsec/nodex/libs/identity"
	"github.com/nodexsec/nodex/libs/logx"
	"github.com/nodexsec/nodex/services/monitor/internal/rules"
	"github.com/nodexsec/nodex/services/monitor/monitor"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	if err := run(ctx, os.Args[1:], conf.OSEnv(), os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "monitor:", err)
		os.Exit(1)
	}
}

// options are the command-line settings besides [monitor.Config].
type options struct {
	server, creds, logFormat, logLevel string
	checkConfig, printRules            bool
}

func run(ctx context.Context, args []string, getenv conf.Getenv, stdout,
	stderr io.Writer) error {
	cfg, opts, err := parseFlags(args, getenv, stderr)
	if err != nil {
		return err
	}
	if opts.printRules {
		_, err := stdout.Write(rules.DefaultYAML())
		return err
	}

	level, err := logx.ParseLevel(opts.logLevel)
	if err != nil {
		return err
	}
	log, err := logx.New(stderr, logx.Options{Format: opts.logFormat, Level: level})
	if err != nil {
		return err
	}
	if opts.checkConfig {
		return checkConfig(cfg)
	}
	log.InfoContext(ctx, "configuration loaded", "config", conf.Masked(cfg))

	deps, closeDeps, err := connect(ctx, cfg, opts)
	if err != nil {
		return err
	}
	defer closeDeps()
	deps.Log = log

	reload := make(chan struct{}, 1)
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	go func() {
		for range hup {
			select {
			case reload <- struct{}{}:
			default:
			}
		}
	}()
	deps.Reload = reload

	return monitor.Run(ctx, cfg, deps)
}

func parseFlags(args []string, getenv conf.Getenv,
	stderr io.Writer) (monitor.Config, options, error) {
	var cfg monitor.Config
	var o options
	fs := flag.NewFlagSet("monitor", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.server, "server", nats.DefaultURL, "NATS server URL")
	fs.StringVar(&o.creds, "creds", "", "credentials file of the monitor identity")
	fs.StringVar(&o.logFormat, "log-format", "text", "log format: text or json")
	fs.StringVar(&o.logLevel, "log-level", "info", "log level: debug, info, warn or error")
	fs.BoolVar(&o.checkConfig, "check-config", false, "validate configuration and rules, then exit")
	fs.BoolVar(&o.printRules, "print-default-rules", false, "print the built-in rule file and exit")
	fs.StringVar(&cfg.RulesFile, "rules", "", "YAML rule file (default: built-in rules)")
	fs.DurationVar(&cfg.ReloadInterval, "reload-interval", 0,
		"how often the rule file is reread (default 10s); SIGHUP rereads it at once")
	fs.StringVar(&cfg.MetricsAddr, "metrics-addr", "",
		`Prometheus endpoint host:port (default 127.0.0.1:9464), "off" for none`)
	fs.IntVar(&cfg.FloodRatePerSecond, "flood-rate", 0,
		"events per second of stream time one source may publish before shedding (default 2000)")
	fs.IntVar(&cfg.FloodBurst, "flood-burst", 0, "events one source may publish in a burst (default 10000)")
	fs.Float64Var(&cfg.ReportRatePerSecond, "report-rate", 0,
		"events per second one agent may report on nodex.v1.monitor.report (default 2)")
	fs.IntVar(&cfg.ReportBurst, "report-burst", 0, "events one agent may report in a burst (default 20)")
	fs.IntVar(&cfg.Replicas, "replicas", 0, "replicas of the monitor's streams and KV buckets (default 1)")
	fs.DurationVar(&cfg.DrainTimeout, "drain-timeout", 0, "shutdown bound (default 10s)")
	fs.BoolVar(&cfg.InsecurePlainEvents, "insecure-plain-events", false,
		"read events as plain JSON without envelopes; development only")
	if err := fs.Parse(args); err != nil {
		return cfg, o, err
	}
	if err := conf.ApplyEnv(fs, "NODEX_MONITOR", getenv); err != nil {
		return cfg, o, err
	}
	if o.creds == "" {
		o.creds = getenv("NODEX_CREDS")
	}
	if u := getenv("NATS_URL"); u != "" && !flagGiven(fs, "server") {
		o.server = u
	}

	return cfg, o, nil
}

func flagGiven(fs *flag.FlagSet, name string) bool {
	found := false
	fs.Visit(func(f *flag.Flag) { found = found || f.Name == name })

	return found
}

func checkConfig(cfg monitor.Config) error {
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return err
	}
	_, err := rules.Load(cfg.RulesFile)

	return err
}

// connect opens the monitor's NATS connection and, unless plain events are
// configured, its secure bus client over the identity registry.
func connect(ctx context.Context, cfg monitor.Config,
	o options) (monitor.Deps, func(), error) {
	if cfg.InsecurePlainEvents {
		nc, err := nats.Connect(o.server, nats.Name("monitor"))
		if err != nil {
			return monitor.Deps{}, nil, fmt.Errorf("connecting to %s: %w", o.server, err)
		}
		js, err := jetstream.New(nc)
		if err != nil {
			nc.Close()
			return monitor.Deps{}, nil, fmt.Errorf("creating JetStream context: %w", err)
		}
		return monitor.Deps{JS: js}, nc.Close, nil
	}
	if o.creds == "" {
		return monitor.Deps{}, nil, errors.New(
			"missing -creds (or NODEX_CREDS): the monitor identity's credentials file")
	}
	return connectSecure(ctx, o)
}

func connectSecure(ctx context.Context, o options) (monitor.Deps, func(), error) {
	creds, err := identity.LoadCreds(o.creds)
	if err != nil {
		return monitor.Deps{}, nil, err
	}
	nc, err := broker.Connect(ctx, o.server, creds)
	if err != nil {
		return monitor.Deps{}, nil, err
	}
	fail := func(err error) (monitor.Deps, func(), error) {
		nc.Close()
		return monitor.Deps{}, nil, err
	}
	js, err := jetstream.New(nc)
	if err != nil {
		return fail(fmt.Errorf("creating JetStream context: %w", err))
	}
	kv, err := js.KeyValue(ctx, identity.Bucket)
	if err != nil {
		return fail(fmt.Errorf("binding registry bucket %s: %w", identity.Bucket, err))
	}
	view, err := identity.Watch(ctx, kv, creds.RootKey, identity.ViewOptions{})
	if err != nil {
		return fail(err)
	}
	wraps, err := bus.NewWrapStore(ctx, js, 0)
	if err != nil {
		return fail(err)
	}
	codec, err := envelope.New(envelope.Config{
		Keys:      &identity.Keyring{Creds: creds, View: view},
		Directory: &identity.Directory{View: view},
		Wraps:     wraps,
	})
	if err != nil {
		return fail(fmt.Errorf("creating envelope codec: %w", err))
	}
	client, err := bus.New(bus.Config{Conn: nc, Codec: codec})
	if err != nil {
		return fail(err)
	}
	closeAll := func() {
		_ = client.Drain(context.Background())
		view.Close()
		nc.Close()
	}

	return monitor.Deps{Bus: client, JS: js}, closeAll, nil
}
