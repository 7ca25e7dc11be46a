// Command incident runs the NodeX incident service on its own: it connects
// to NATS as the incident identity, consumes NODEX_THREATS, contains
// incidents and serves the operator subjects. `nodex dev` runs the same
// service in process.
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

	"github.com/nodexsec/nodex/libs/authz"
	"github.com/nodexsec/nodex/libs/broker"
	"github.com/nodexsec/nodex/libs/bus"
	"github.com/nodexsec/nodex/libs/conf"
	"github.com/nodexsec/nodex/libs/envelope"
	"github.com/nodexsec/nodex/libs/events"
	"github.com/nodexsec/nodex/libs/identity"
	"github.com/nodexsec/nodex/libs/logx"
	"github.com/nodexsec/nodex/services/incident/incident"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	if err := run(ctx, os.Args[1:], conf.OSEnv(), os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "incident:", err)
		os.Exit(1)
	}
}

// options are the command-line settings besides [incident.Config].
type options struct {
	server, creds, authorityKey, logFormat, logLevel string
	checkConfig                                      bool
}

func run(ctx context.Context, args []string, getenv conf.Getenv, stderr io.Writer) error {
	cfg, opts, err := parseFlags(args, getenv, stderr)
	if err != nil {
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
	if cfg, err = cfg.WithDefaults(); err != nil {
		return err
	}
	if err := cfg.Validate(); err != nil {
		return err
	}
	if opts.checkConfig {
		return nil
	}
	log.InfoContext(ctx, "configuration loaded", "config", cfg.String(),
		"max_attempts", cfg.MaxAttempts, "resume_interval", cfg.ResumeInterval,
		"expiry_interval", cfg.ExpiryInterval)

	deps, closeDeps, err := connect(ctx, opts)
	if err != nil {
		return err
	}
	defer closeDeps()
	deps.Config, deps.Log = cfg, log

	return incident.Run(ctx, deps)
}

func parseFlags(args []string, getenv conf.Getenv, stderr io.Writer,
) (incident.Config, options, error) {
	var cfg incident.Config
	var o options
	fs := flag.NewFlagSet("incident", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.server, "server", nats.DefaultURL, "NATS server URL")
	fs.StringVar(&o.creds, "creds", "", "credentials file of the incident identity")
	fs.StringVar(&o.authorityKey, "authority-key", "",
		"authority.key file written by nodex init, mode 0600 or 0400; it signs suspensions")
	fs.StringVar(&o.logFormat, "log-format", "text", "log format: text or json")
	fs.StringVar(&o.logLevel, "log-level", "info", "log level: debug, info, warn or error")
	fs.BoolVar(&o.checkConfig, "check-config", false, "validate configuration, then exit")
	fs.StringVar(&cfg.PlaybookFile, "playbook", "",
		"JSON containment playbook (default: the built-in playbook)")
	fs.IntVar(&cfg.Replicas, "replicas", 0, "replicas of the incident bucket (default 1)")
	fs.DurationVar(&cfg.ResumeInterval, "resume-interval", 0,
		"how often open incidents are advanced and failed actions retried (default 30s)")
	fs.DurationVar(&cfg.ExpiryInterval, "expiry-interval", 0,
		"how often expired containments are lifted (default 15s)")
	fs.IntVar(&cfg.MaxAttempts, "max-attempts", 0,
		"automatic attempts of one containment action (default 5)")
	if err := fs.Parse(args); err != nil {
		return cfg, o, err
	}
	if err := conf.ApplyEnv(fs, "NODEX_INCIDENT", getenv); err != nil {
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
	given := false
	fs.Visit(func(f *flag.Flag) { given = given || f.Name == name })

	return given
}

// connect opens the incident's NATS connection, registry view, bus client,
// policy engine and event publisher.
func connect(ctx context.Context, o options) (incident.Deps, func(), error) {
	if o.creds == "" {
		return incident.Deps{}, nil, errors.New(
			"missing -creds (or NODEX_CREDS): the incident identity's credentials file")
	}
	creds, err := identity.LoadCreds(o.creds)
	if err != nil {
		return incident.Deps{}, nil, err
	}
	if o.authorityKey == "" {
		return incident.Deps{}, nil, errors.New(
			"missing -authority-key (or NODEX_INCIDENT_AUTHORITY_KEY): the authority.key file " +
				"that nodex init writes")
	}
	// Only the authority key: the incident service needs no root key, and
	// it never creates a key of its own.
	authority, err := identity.LoadSigner(o.authorityKey, identity.SignerAuthority)
	if err != nil {
		return incident.Deps{}, nil, fmt.Errorf("loading the authority key: %w", err)
	}
	nc, err := broker.Connect(ctx, o.server, creds)
	if err != nil {
		return incident.Deps{}, nil, err
	}
	var closers []func()
	closeAll := func() {
		for i := len(closers) - 1; i >= 0; i-- {
			closers[i]()
		}
		nc.Close()
	}
	deps, err := buildDeps(ctx, nc, creds, authority, &closers)
	if err != nil {
		closeAll()

		return incident.Deps{}, nil, err
	}

	return deps, closeAll, nil
}

func buildDeps(ctx context.Context, nc *nats.Conn, creds *identity.Credentials,
	authority identity.Signer, closers *[]func(),
) (incident.Deps, error) {
	js, err := jetstream.New(nc)
	if err != nil {
		return incident.Deps{}, fmt.Errorf("creating JetStream context: %w", err)
	}
	kv, err := js.KeyValue(ctx, identity.Bucket)
	if err != nil {
		return incident.Deps{}, fmt.Errorf("binding registry bucket %s: %w", identity.Bucket, err)
	}
	view, err := identity.Watch(ctx, kv, creds.RootKey, identity.ViewOptions{})
	if err != nil {
		return incident.Deps{}, err
	}
	*closers = append(*closers, view.Close)
	wraps, err := bus.NewWrapStore(ctx, js, 0)
	if err != nil {
		return incident.Deps{}, err
	}
	codec, err := envelope.New(envelope.Config{
		Keys:      &identity.Keyring{Creds: creds, View: view},
		Directory: &identity.Directory{View: view}, Wraps: wraps,
	})
	if err != nil {
		return incident.Deps{}, fmt.Errorf("creating envelope codec: %w", err)
	}
	client, err := bus.New(bus.Config{Conn: nc, Codec: codec})
	if err != nil {
		return incident.Deps{}, err
	}
	pub := events.NewPublisher(client, creds.ID, events.PublisherOptions{})
	*closers = append(*closers, func() { _ = pub.Close(context.Background()) })
	engine, err := watchPolicy(ctx, js, pub, closers)
	if err != nil {
		return incident.Deps{}, err
	}

	return incident.Deps{
		Client: client, Audit: pub, Authorizer: engine, Registry: view,
		Authority: identity.NewAuthorityWriter(kv, authority),
	}, nil
}

// watchPolicy returns an engine that follows the policy bucket and audits
// every decision through pub.
func watchPolicy(ctx context.Context, js jetstream.JetStream, pub *events.Publisher,
	closers *[]func(),
) (*authz.Engine, error) {
	kv, err := js.KeyValue(ctx, authz.KVBucket)
	if err != nil {
		return nil, fmt.Errorf("binding policy bucket %s: %w", authz.KVBucket, err)
	}
	engine := authz.New(authz.Options{Audit: authz.EventSink(pub)})
	w, err := authz.WatchKV(ctx, kv, engine, authz.WatchOptions{})
	if err != nil {
		return nil, fmt.Errorf("watching policy: %w", err)
	}
	*closers = append(*closers, w.Stop)

	return engine, nil
}
