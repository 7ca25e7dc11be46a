package broker

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"

	"github.com/nodexsec/nodex/libs/identity"
)

// CalloutQueue is the queue group of the auth callout responders. In a
// cluster every node runs one, and NATS delivers a queue message to a
// subscriber on the publishing server when there is one, so each node
// usually authorizes its own clients.
const CalloutQueue = "nodex-callout"

// DefaultReplicaCheckInterval is how often a clustered broker raises the
// replication of streams created with fewer replicas than NodeConfig.Replicas.
const DefaultReplicaCheckInterval = 5 * time.Second

// NodeConfig configures one broker of a NATS cluster. Every node runs the
// same auth callout, so every node needs the same issuer key, root key and
// permission table.
type NodeConfig struct {
	// Config holds the single-server settings. Host "0.0.0.0" listens on
	// every interface, which containers need.
	Config
	// Name is the server name, unique in the cluster (JetStream requires it).
	Name string
	// ClusterName names the cluster; every node uses the same one.
	ClusterName string
	// ClusterHost and ClusterPort are where routes from other nodes arrive.
	ClusterHost string
	ClusterPort int
	// Routes are the route URLs of the other nodes, e.g.
	// nats-route://broker-2:6222. A node's own URL may be listed too.
	Routes []string
	// IssuerSeed is the seed of the account nkey that signs auth callout
	// replies and user JWTs. Every node must use the same one, because the
	// responder of any node may reply to a callout request. Required.
	IssuerSeed []byte
	// TLS, if set, turns on TLS for clients (server certificate only, the
	// nkey callout authenticates the client) and mutual TLS between nodes.
	TLS *TLSFiles
	// Replicas is the replication factor of the registry bucket the broker
	// creates. The broker also raises every other stream of the NODEX
	// account to it. Zero means 1, which raises nothing.
	Replicas int
	// ReplicaCheckInterval is how often streams are checked; zero means
	// DefaultReplicaCheckInterval.
	ReplicaCheckInterval time.Duration
	// JetStreamWait bounds the wait for the cluster's JetStream meta leader
	// at start; zero means one minute.
	JetStreamWait time.Duration
	// ServerLog writes nats-server's own log (routes, elections, TLS
	// errors) to stderr.
	ServerLog bool
}

// TLSFiles names the PEM files of a node: the CA that signed every node
// and client certificate, the node's certificate and its private key.
type TLSFiles struct {
	CA, Cert, Key string
}

// StartNode starts one clustered broker. Its internal users connect in
// process, so they need neither the network nor TLS. It waits until
// JetStream has a meta leader, which needs a majority of the nodes.
func StartNode(ctx context.Context, cfg NodeConfig) (*Broker, error) {
	if err := cfg.check(); err != nil {
		return nil, err
	}
	if cfg.Host == "" {
		cfg.Host = "127.0.0.1"
	}
	if cfg.Grants == nil {
		cfg.Grants = DefaultGrants()
	}
	if cfg.OnError == nil {
		cfg.OnError = func(error) {}
	}
	issuer, err := nkeys.FromSeed(cfg.IssuerSeed)
	if err != nil {
		return nil, fmt.Errorf("%w: reading callout issuer seed: %w", ErrConfig, err)
	}
	users := internalUsers{admin: randomSecret(), auth: randomSecret(), sys: randomSecret()}
	q := newViolationQueue()
	srv, err := newNodeServer(cfg, issuer, users, q)
	if err != nil {
		return nil, err
	}
	b := newBroker(cfg.Config, srv, issuer, q)
	if err := b.startNode(ctx, cfg, users); err != nil {
		b.Shutdown()
		return nil, err
	}

	return b, nil
}

func (cfg *NodeConfig) check() error {
	switch {
	case cfg.DataDir == "" || len(cfg.Root) == 0:
		return fmt.Errorf("%w: DataDir and Root are required", ErrConfig)
	case cfg.Name == "" || cfg.ClusterName == "":
		return fmt.Errorf("%w: Name and ClusterName are required", ErrConfig)
	case len(cfg.IssuerSeed) == 0:
		return fmt.Errorf("%w: IssuerSeed is required: every node needs the same one", ErrConfig)
	case cfg.Replicas < 0 || cfg.Replicas > 5:
		return fmt.Errorf("%w: replicas %d must be 0 to 5", ErrConfig, cfg.Replicas)
	}

	return nil
}

// newNodeServer builds the server of one node: the accounts and callout of
// newServer plus the cluster listener, routes and TLS.
func newNodeServer(cfg NodeConfig, issuer nkeys.KeyPair, u internalUsers, q *violationQueue,
) (*server.Server, error) {
	opts, err := serverOptions(cfg.Config, issuer, u)
	if err != nil {
		return nil, err
	}
	opts.ServerName = cfg.Name
	opts.Cluster.Name = cfg.ClusterName
	opts.Cluster.Host = cfg.ClusterHost
	opts.Cluster.Port = cfg.ClusterPort
	if opts.Cluster.Port == 0 {
		opts.Cluster.Port = server.RANDOM_PORT
	}
	for _, r := range cfg.Routes {
		ru, err := url.Parse(r)
		if err != nil {
			return nil, fmt.Errorf("%w: route %q: %w", ErrConfig, r, err)
		}
		opts.Routes = append(opts.Routes, ru)
	}
	if cfg.TLS != nil {
		if err := applyTLS(opts, cfg.TLS); err != nil {
			return nil, err
		}
	}
	opts.NoLog = !cfg.ServerLog
	srv, err := server.NewServer(opts)
	if err == nil && !opts.NoLog {
		srv.ConfigureLogger()
	}
	if err != nil {
		return nil, fmt.Errorf("creating nats-server %s: %w", cfg.Name, err)
	}
	installViolationLog(srv, q, opts.Debug, opts.Trace)
	go srv.Start()
	if !srv.ReadyForConnections(10 * time.Second) {
		srv.Shutdown()
		return nil, fmt.Errorf("starting nats-server %s on %s:%d: not ready after 10s",
			cfg.Name, cfg.Host, cfg.Port)
	}

	return srv, nil
}

// serverOptions returns the options newServer uses for a single server.
func serverOptions(cfg Config, issuer nkeys.KeyPair, u internalUsers) (*server.Options, error) {
	issuerPub, _ := issuer.PublicKey()
	conf := `
accounts {
  ` + AccountNodeX + ` { jetstream: enabled, users: [ {user: nodex-admin, password: "` + u.admin + `"} ] }
  ` + AccountAuth + ` { users: [ {user: nodex-auth, password: "` + u.auth + `"} ] }
  ` + AccountSystem + ` { users: [ {user: nodex-sys, password: "` + u.sys + `"} ] }
}
system_account: ` + AccountSystem + `
authorization {
  auth_callout {
    issuer: "` + issuerPub + `"
    account: ` + AccountAuth + `
    auth_users: [ nodex-admin, nodex-auth, nodex-sys ]
  }
}
`
	opts := &server.Options{}
	if err := opts.ProcessConfigString(conf); err != nil {
		return nil, fmt.Errorf("building nats-server options: %w", err)
	}
	opts.Host = cfg.Host
	opts.Port = cfg.Port
	if cfg.Port == 0 {
		opts.Port = server.RANDOM_PORT
	}
	opts.JetStream = true
	opts.StoreDir = filepath.Join(cfg.DataDir, "jetstream")
	opts.SyncAlways = !cfg.NoSyncAlways
	opts.AlwaysEnableNonce = true
	opts.NoSigs = true
	opts.NoLog = true

	return opts, nil
}

// applyTLS requires TLS from clients and mutual TLS on routes. Clients are
// not asked for a certificate: the callout authenticates them by nkey.
func applyTLS(opts *server.Options, files *TLSFiles) error {
	clientTLS, err := server.GenTLSConfig(&server.TLSConfigOpts{
		CertFile: files.Cert, KeyFile: files.Key, CaFile: files.CA,
	})
	if err != nil {
		return fmt.Errorf("%w: loading client TLS files %s, %s: %w",
			ErrConfig, files.Cert, files.Key, err)
	}
	routeTLS, err := server.GenTLSConfig(&server.TLSConfigOpts{
		CertFile: files.Cert, KeyFile: files.Key, CaFile: files.CA, Verify: true,
	})
	if err != nil {
		return fmt.Errorf("%w: loading route TLS files: %w", ErrConfig, err)
	}
	// Outgoing routes verify the other node against the same CA, as
	// nats-server's own cluster tls block does.
	routeTLS.RootCAs = routeTLS.ClientCAs
	opts.TLSConfig = clientTLS
	opts.TLS = true
	opts.TLSTimeout = 2
	opts.Cluster.TLSConfig = routeTLS
	opts.Cluster.TLSTimeout = 2

	return nil
}

func (b *Broker) startNode(ctx context.Context, cfg NodeConfig, u internalUsers) error {
	if err := b.connectInProcess(u); err != nil {
		return err
	}
	var err error
	if b.js, err = jetstream.New(b.admin); err != nil {
		return fmt.Errorf("creating JetStream context: %w", err)
	}
	if b.kv, err = openRegistry(ctx, b.js, cfg); err != nil {
		return err
	}
	if b.view, err = watchRegistry(ctx, b.kv, b.cfg, cfg); err != nil {
		return err
	}
	b.view.OnChange(b.onIdentityChange)
	if err := b.subscribeConnEvents(); err != nil {
		return err
	}
	if err := b.subscribeConsumerAudit(); err != nil {
		return err
	}
	if _, err := b.authNC.QueueSubscribe(server.AuthCalloutSubject, CalloutQueue,
		b.handleCallout); err != nil {
		return fmt.Errorf("subscribing to %s: %w", server.AuthCalloutSubject, err)
	}
	if err := b.authNC.Flush(); err != nil {
		return fmt.Errorf("flushing callout subscription: %w", err)
	}
	b.startBackground()
	if cfg.Replicas > 1 {
		every := cfg.ReplicaCheckInterval
		if every <= 0 {
			every = DefaultReplicaCheckInterval
		}
		ctx, cancel := context.WithCancel(context.Background())
		stopSweeps := b.cancel
		b.cancel = func() { cancel(); stopSweeps() }
		b.wg.Go(func() { b.raiseReplicas(ctx, cfg.Replicas, every) })
	}

	return nil
}

// connectInProcess connects the three internal users without a socket,
// which the server exempts from its TLS requirement.
func (b *Broker) connectInProcess(u internalUsers) error {
	var err error
	conn := func(user, pass, name string) (*nats.Conn, error) {
		return nats.Connect("", nats.InProcessServer(b.srv), nats.UserInfo(user, pass),
			nats.Name(name), nats.MaxReconnects(-1))
	}
	if b.admin, err = conn("nodex-admin", u.admin, "nodex-broker-admin"); err != nil {
		return fmt.Errorf("connecting broker admin user: %w", err)
	}
	if b.authNC, err = conn("nodex-auth", u.auth, "nodex-broker-auth"); err != nil {
		return fmt.Errorf("connecting broker callout user: %w", err)
	}
	if b.sysNC, err = conn("nodex-sys", u.sys, "nodex-broker-sys"); err != nil {
		return fmt.Errorf("connecting broker system user: %w", err)
	}

	return nil
}

// openRegistry opens the registry bucket, creating it at cfg.Replicas
// when missing. It never updates an existing bucket, because an update
// with the single-server defaults would lower its replication. It retries
// until the cluster has elected a JetStream meta leader.
func openRegistry(ctx context.Context, js jetstream.JetStream, cfg NodeConfig,
) (jetstream.KeyValue, error) {
	wait := cfg.JetStreamWait
	if wait <= 0 {
		wait = time.Minute
	}
	ctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	for {
		// A request sent before the meta leader exists may get no reply, so
		// each attempt has its own deadline.
		attempt, cancelAttempt := context.WithTimeout(ctx, 2*time.Second)
		kv, err := openOrCreateRegistry(attempt, js, max(cfg.Replicas, 1))
		cancelAttempt()
		if err == nil {
			return kv, nil
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("opening registry bucket %s on %s: %w",
				identity.Bucket, cfg.Name, err)
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// watchRegistry starts the registry view, retrying until the registry
// stream has a leader. After a whole cluster restarts, the meta leader
// returns the bucket's info first, and the stream elects its own leader
// seconds later (nats-server's raft election timeouts are 4 to 9 s). A node that gave up then would restart, and two
// nodes restarting in turn never form the quorum that election needs.
func watchRegistry(ctx context.Context, kv jetstream.KeyValue, bc Config, cfg NodeConfig,
) (*identity.View, error) {
	wait := cfg.JetStreamWait
	if wait <= 0 {
		wait = time.Minute
	}
	opts := identity.ViewOptions{StaleAfter: bc.StaleAfter}
	if opts.StaleAfter <= 0 {
		// A retry cannot fix an invalid setting.
		d, err := identity.StaleAfterFromEnv(os.Getenv)
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrConfig, err)
		}
		opts.StaleAfter = d
	}
	ctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	for {
		attempt, cancelAttempt := context.WithTimeout(ctx, 30*time.Second)
		view, err := identity.Watch(attempt, kv, bc.Root, opts)
		cancelAttempt()
		if err == nil {
			return view, nil
		}
		bc.OnError(fmt.Errorf("starting the registry view on %s, retrying: %w", cfg.Name, err))
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("watching registry bucket %s on %s for %s: %w",
				identity.Bucket, cfg.Name, wait, err)
		case <-time.After(time.Second):
		}
	}
}

func openOrCreateRegistry(ctx context.Context, js jetstream.JetStream, replicas int,
) (jetstream.KeyValue, error) {
	kv, err := js.KeyValue(ctx, identity.Bucket)
	if err == nil || !errors.Is(err, jetstream.ErrBucketNotFound) {
		return kv, err
	}
	kv, err = js.CreateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket:      identity.Bucket,
		Description: "NodeX identity registry, every value signed by the operator root key",
		History:     8,
		Storage:     jetstream.FileStorage,
		Replicas:    replicas,
	})
	if errors.Is(err, jetstream.ErrBucketExists) {
		return js.KeyValue(ctx, identity.Bucket)
	}

	return kv, err
}

// raiseReplicas raises every stream of the NODEX account below replicas
// to replicas, at start and then every interval. A restarted service does
// not lower them again, because services update streams only through the
// libs/bus Ensure helpers, which keep a higher replica count.
func (b *Broker) raiseReplicas(ctx context.Context, replicas int, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		if err := RaiseReplicas(ctx, b.js, replicas); err != nil && ctx.Err() == nil {
			b.cfg.OnError(err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// RaiseReplicas updates every stream with fewer than replicas replicas to
// replicas. KV buckets and object stores are streams too.
func RaiseReplicas(ctx context.Context, js jetstream.JetStream, replicas int) error {
	var errs []error
	names := js.StreamNames(ctx)
	for name := range names.Name() {
		s, err := js.Stream(ctx, name)
		if err != nil {
			errs = append(errs, fmt.Errorf("reading stream %s: %w", name, err))
			continue
		}
		sc := s.CachedInfo().Config
		if sc.Replicas >= replicas {
			continue
		}
		sc.Replicas = replicas
		if _, err := js.UpdateStream(ctx, sc); err != nil {
			errs = append(errs, fmt.Errorf("raising stream %s to %d replicas: %w",
				name, replicas, err))
		}
	}
	if err := names.Err(); err != nil {
		errs = append(errs, fmt.Errorf("listing streams: %w", err))
	}

	return errors.Join(errs...)
}
