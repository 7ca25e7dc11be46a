// Command policy runs the NodeX policy service on its own: it connects to
// NATS as the policy identity, keeps the policy set and role data in the
// NODEX_POLICY bucket and serves nodex.v1.policy.*. `nodex dev` runs the
// same service in process.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/nodexsec/nodex/libs/broker"
	"github.com/nodexsec/nodex/libs/bus"
	"github.com/nodexsec/nodex/libs/conf"
	"github.com/nodexsec/nodex/libs/envelope"
	"github.com/nodexsec/nodex/libs/events"
	"github.com/nodexsec/nodex/libs/identity"
	"github.com/nodexsec/nodex/libs/logx"
	"github.com/nodexsec/nodex/services/policy/policy"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	if err := run(ctx, os.Args[1:], conf.OSEnv(), os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "policy:", err)
		os.Exit(1)
	}
}

// options are the command-line settings besides [policy.Config].
type options struct {
	server, creds, logFormat, logLevel string
	checkConfig                        bool
}

func run(ctx context.Context, args []string, getenv conf.Getenv, stderr io.Writer) error {
	cfg, opts, err := parseFlags(args, getenv, stderr)
	if err != nil {
		return err
	}
	if opts.checkConfig {
		return cfg.WithDefaults().Validate()
	}

	level, err := logx.ParseLevel(opts.logLevel)
	if err != nil {
		return err
	}
	log, err := logx.New(stderr, logx.Options{Format: opts.logFormat, Level: level})
	if err != nil {
		return err
	}
	log.InfoContext(ctx, "configuration loaded", "config", conf.Masked(cfg.WithDefaults()))

	conn, err := connect(ctx, opts)
	if err != nil {
		return err
	}
	defer conn.close()

	lost := lostLogger{log: log}
	pub := events.NewPublisher(conn.client, conn.keys.ID(), events.PublisherOptions{
		OnLost: lost.record,
	})
	defer func() {
		closeCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := pub.Close(closeCtx); err != nil {
			log.Error("closing event publisher", "lost", pub.Lost(), "error", err)
		}
	}()

	return policy.Run(ctx, policy.Deps{
		Client: conn.client, Events: pub, Log: log, Config: cfg,
		Signer: conn.keys, Directory: conn.dir,
	})
}

func parseFlags(args []string, getenv conf.Getenv,
	stderr io.Writer) (policy.Config, options, error) {
	var cfg policy.Config
	var o options
	fs := flag.NewFlagSet("policy", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.server, "server", nats.DefaultURL, "NATS server URL")
	fs.StringVar(&o.creds, "creds", "", "credentials file of the policy identity")
	fs.StringVar(&o.logFormat, "log-format", "text", "log format: text or json")
	fs.StringVar(&o.logLevel, "log-level", "info", "log level: debug, info, warn or error")
	fs.BoolVar(&o.checkConfig, "check-config", false, "validate the configuration, then exit")
	cfg.RegisterFlags(fs)
	if err := fs.Parse(args); err != nil {
		return cfg, o, err
	}
	if err := conf.ApplyEnv(fs, "NODEX_POLICY", getenv); err != nil {
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

// connection is the policy identity's link to NATS and the registry.
type connection struct {
	client *bus.Client
	keys   *identity.Keyring
	dir    *identity.Directory
	close  func()
}

// connect opens the policy identity's NATS connection and its secure bus
// client over the identity registry.
func connect(ctx context.Context, o options) (*connection, error) {
	if o.creds == "" {
		return nil, errors.New(
			"missing -creds (or NODEX_CREDS): the policy identity's credentials file")
	}
	creds, err := identity.LoadCreds(o.creds)
	if err != nil {
		return nil, err
	}
	nc, err := broker.Connect(ctx, o.server, creds)
	if err != nil {
		return nil, err
	}

	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		return nil, fmt.Errorf("creating JetStream context: %w", err)
	}
	kv, err := js.KeyValue(ctx, identity.Bucket)
	if err != nil {
		nc.Close()
		return nil, fmt.Errorf("binding registry bucket %s: %w", identity.Bucket, err)
	}
	view, err := identity.Watch(ctx, kv, creds.RootKey, identity.ViewOptions{})
	if err != nil {
		nc.Close()
		return nil, err
	}
	closeAll := func() {
		view.Close()
		nc.Close()
	}

	c, err := newClient(ctx, js, nc, creds, view)
	if err != nil {
		closeAll()
		return nil, err
	}
	c.close = closeAll

	return c, nil
}

func newClient(ctx context.Context, js jetstream.JetStream, nc *nats.Conn,
	creds *identity.Credentials, view *identity.View) (*connection, error) {
	wraps, err := bus.NewWrapStore(ctx, js, 0)
	if err != nil {
		return nil, err
	}
	keys := &identity.Keyring{Creds: creds, View: view}
	dir := &identity.Directory{View: view}
	codec, err := envelope.New(envelope.Config{Keys: keys, Directory: dir, Wraps: wraps})
	if err != nil {
		return nil, fmt.Errorf("creating envelope codec: %w", err)
	}
	client, err := bus.New(bus.Config{Conn: nc, Codec: codec})
	if err != nil {
		return nil, err
	}

	return &connection{client: client, keys: keys, dir: dir}, nil
}

// lostLogger logs lost decision events at most once per second, with the
// number lost since the previous line, so that a flood does not flood the log.
type lostLogger struct {
	log *slog.Logger

	mu     sync.Mutex
	last   time.Time
	missed int
}

func (l *lostLogger) record(ev events.SecurityEvent, err error) {
	l.mu.Lock()
	defer l.mu.Unlock()

	l.missed++
	if time.Since(l.last) < time.Second {
		return
	}
	l.log.Error("decision events lost", "lost", l.missed, "msg_id", ev.ID,
		"event_type", ev.Type, "error", err)
	l.last, l.missed = time.Now(), 0
}
