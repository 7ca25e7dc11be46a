// Command nodex-broker runs one node of a clustered NodeX broker:
// nats-server with JetStream, TLS and the registry-driven auth callout.
// Every node reads the broker folder that `nodex init` writes.
package main

import (
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/nodexsec/nodex/libs/broker"
	"github.com/nodexsec/nodex/libs/bus"
	"github.com/nodexsec/nodex/libs/events"
	"github.com/nodexsec/nodex/libs/identity"
	"github.com/nodexsec/nodex/libs/logx"
	"github.com/nodexsec/nodex/services/nodex/internal/deploy"
)

type options struct {
	name, cluster, host, clusterHost, routes, secrets, data string
	port, clusterPort, replicas                             int
	serverLog                                               bool
}

func main() {
	log := slog.New(slog.NewJSONHandler(os.Stderr, nil)).With(logx.KeyService, "broker")
	o, err := parseFlags(os.Args[1:])
	if errors.Is(err, flag.ErrHelp) {
		return
	}
	if err != nil {
		log.Error("invalid configuration", logx.Err(err))
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, o, log); err != nil {
		log.Error("broker stopped", logx.Err(err))
		os.Exit(1)
	}
}

func parseFlags(args []string) (options, error) {
	var o options
	fs := flag.NewFlagSet("nodex-broker", flag.ContinueOnError)
	fs.StringVar(&o.name, "name", os.Getenv("NODEX_BROKER_NAME"),
		"server name, unique in the cluster (env NODEX_BROKER_NAME)")
	fs.StringVar(&o.cluster, "cluster", "nodex", "cluster name, the same on every node")
	fs.StringVar(&o.host, "host", "0.0.0.0", "client listen address")
	fs.IntVar(&o.port, "port", 4222, "client port")
	fs.StringVar(&o.clusterHost, "cluster-host", "0.0.0.0", "route listen address")
	fs.IntVar(&o.clusterPort, "cluster-port", 6222, "route port")
	fs.StringVar(&o.routes, "routes", os.Getenv("NODEX_BROKER_ROUTES"),
		"comma-separated route URLs of the nodes, e.g. nats-route://broker-2:6222 "+
			"(env NODEX_BROKER_ROUTES)")
	fs.StringVar(&o.secrets, "secrets", "/run/secrets/nodex",
		"broker folder written by nodex init (issuer seed, keys, TLS files)")
	fs.StringVar(&o.data, "data", "/data", "JetStream storage folder")
	fs.IntVar(&o.replicas, "replicas", 3, "replicas of the registry and of every stream")
	fs.BoolVar(&o.serverLog, "server-log", false, "write nats-server's own log to stderr")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if o.name == "" {
		return o, errors.New("no server name: pass -name or set NODEX_BROKER_NAME")
	}

	return o, nil
}

func run(ctx context.Context, o options, log *slog.Logger) error {
	cfg, err := nodeConfig(o, log)
	if err != nil {
		return err
	}
	b, err := broker.StartNode(ctx, cfg)
	if err != nil {
		return err
	}
	defer b.Shutdown()
	// TODO: publish denials as broker.denied events here too; this process
	// holds no identity that may publish events, so they reach only the log.
	b.OnDenial(func(d broker.Denial) {
		log.Warn("broker denied", slog.String("kind", d.Kind), slog.String(logx.KeyIdentity, d.Identity),
			slog.Uint64("connection", d.ConnID), slog.String(logx.KeySubject, d.Subject),
			slog.String("reason", d.Reason), slog.Int("suppressed", d.Suppressed))
	})
	log.Info("broker started", slog.String("name", o.name), slog.String("url", b.ClientURL()))
	if err := prepare(ctx, b, o, log); err != nil {
		return err
	}
	<-ctx.Done()
	log.Info("broker stopping", slog.String("name", o.name))

	return nil
}

// prepare writes the missing registry records and creates the streams no
// service may create. Every node does it, since any may start first, and
// the writes are idempotent. After a restart of the whole cluster the
// streams need a few seconds to elect leaders, so each step is retried.
func prepare(ctx context.Context, b *broker.Broker, o options, log *slog.Logger) error {
	seed := filepath.Join(o.secrets, deploy.RegistrySeedFile)
	steps := []struct {
		name string
		fn   func(context.Context) error
	}{
		{"registry seed", func(ctx context.Context) error {
			n, err := deploy.ImportRegistry(ctx, b.Registry(), seed)
			if err == nil {
				log.Info("registry seeded", slog.Int("written", n))
			}
			return err
		}},
		{"events stream", func(ctx context.Context) error {
			_, err := events.EnsureStream(ctx, b.JetStream(),
				events.StreamOptions{Replicas: o.replicas})
			return err
		}},
		{"wrap store", func(ctx context.Context) error {
			return ensureWraps(ctx, b.JetStream(), o.replicas)
		}},
	}
	for _, s := range steps {
		if err := retry(ctx, prepareWait, func(ctx context.Context) error {
			err := s.fn(ctx)
			if err != nil {
				log.Warn("preparing the cluster, retrying", slog.String("step", s.name),
					logx.Err(err))
			}
			return err
		}); err != nil {
			return fmt.Errorf("preparing %s: %w", s.name, err)
		}
	}

	return nil
}

// ensureWraps creates the wrap bucket at replicas with the configuration
// bus.OpenWrapStore uses. Created at one replica, it would stop every
// party's start while its only node is down. A bucket that exists with
// fewer replicas is raised by the broker's replica check.
func ensureWraps(ctx context.Context, js jetstream.JetStream, replicas int) error {
	_, err := bus.OpenWrapStore(ctx, js, bus.WrapStoreOptions{Replicas: replicas})

	return err
}

// prepareWait bounds each preparation step across its retries.
const prepareWait = 5 * time.Minute

// retry calls fn with a 5-second deadline until it succeeds or limit passes.
func retry(ctx context.Context, limit time.Duration, fn func(context.Context) error) error {
	deadline := time.Now().Add(limit)
	for {
		attempt, cancel := context.WithTimeout(ctx, 5*time.Second)
		err := fn(attempt)
		cancel()
		if err == nil || time.Now().After(deadline) || ctx.Err() != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Second):
		}
	}
}

func nodeConfig(o options, log *slog.Logger) (broker.NodeConfig, error) {
	read := func(name string) ([]byte, error) {
		data, err := os.ReadFile(filepath.Join(o.secrets, name))
		if err != nil {
			return nil, fmt.Errorf("reading broker secret (run nodex init): %w", err)
		}

		return data, nil
	}
	issuer, err := read(deploy.IssuerSeedFile)
	if err != nil {
		return broker.NodeConfig{}, err
	}
	rootText, err := read(deploy.RootPubFile)
	if err != nil {
		return broker.NodeConfig{}, err
	}
	root, err := base64.StdEncoding.DecodeString(strings.TrimSpace(string(rootText)))
	if err != nil {
		return broker.NodeConfig{}, fmt.Errorf("decoding %s: %w", deploy.RootPubFile, err)
	}
	authority, err := loadAuthority(read)
	if err != nil {
		return broker.NodeConfig{}, err
	}
	var routes []string
	for _, r := range strings.Split(o.routes, ",") {
		if r = strings.TrimSpace(r); r != "" {
			routes = append(routes, r)
		}
	}

	return broker.NodeConfig{
		Config: broker.Config{
			DataDir: o.data, Host: o.host, Port: o.port, Root: root, Authority: &authority,
			OnError: func(err error) { log.Warn("broker background error", logx.Err(err)) },
		},
		Name: o.name, ClusterName: o.cluster, ClusterHost: o.clusterHost,
		ClusterPort: o.clusterPort, Routes: routes, IssuerSeed: issuer,
		TLS: &broker.TLSFiles{
			CA:   filepath.Join(o.secrets, broker.TLSCAFile),
			Cert: filepath.Join(o.secrets, broker.TLSNodeFile),
			Key:  filepath.Join(o.secrets, broker.TLSNodeKeyFile),
		},
		Replicas: o.replicas, JetStreamWait: 5 * time.Minute, ServerLog: o.serverLog,
	}, nil
}

// loadAuthority reads authority.key, the JSON {"name", "seed"} file that
// identity.Bootstrap writes.
func loadAuthority(read func(string) ([]byte, error)) (identity.Signer, error) {
	data, err := read(deploy.AuthorityKeyFile)
	if err != nil {
		return identity.Signer{}, err
	}
	var f struct {
		Name string `json:"name"`
		Seed []byte `json:"seed"`
	}
	err = json.Unmarshal(data, &f)
	if err != nil || f.Name != identity.SignerAuthority || len(f.Seed) != ed25519.SeedSize {
		return identity.Signer{}, fmt.Errorf("%s does not contain an authority key",
			deploy.AuthorityKeyFile)
	}

	return identity.Signer{Name: f.Name, Key: ed25519.NewKeyFromSeed(f.Seed)}, nil
}
