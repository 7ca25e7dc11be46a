// Package broker runs the embedded NATS server of a NodeX deployment and
// authorizes every connection against the identity registry.
//
// Every identity is its own NATS user, authenticated by its nkey. For each
// new connection the server sends an auth callout request on
// $SYS.REQ.USER.AUTH. The broker checks the nkey signature of the server's
// nonce and looks the identity up in its verified registry view. It then
// replies with a user JWT carrying that identity's permissions from the
// permission table ([DefaultGrants]). Adding, suspending or revoking an
// identity therefore needs no server restart, and a suspension or
// revocation also closes the identity's open connections through the
// system account's KICK request.
package broker

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"

	"github.com/nodexsec/nodex/libs/identity"
)

// Accounts of the embedded server. Every identity lives in AccountNodeX;
// the broker's own callout and system users live in the other two.
const (
	AccountNodeX  = "NODEX"
	AccountAuth   = "AUTH"
	AccountSystem = "SYS"
)

// Config configures the embedded server and its authorization.
type Config struct {
	// DataDir holds JetStream's file storage (DataDir/jetstream).
	DataDir string
	// Host is the listen address; empty means 127.0.0.1.
	Host string
	// Port is the client port; 0 picks a free port.
	Port int
	// Root is the pinned operator root public key the registry is
	// verified against. Required.
	Root []byte
	// Grants is the permission table; nil means DefaultGrants().
	Grants []Grant
	// Authority, if set, makes the broker write the registry heartbeat
	// every HeartbeatInterval (zero means the identity package default).
	Authority         *identity.Signer
	HeartbeatInterval time.Duration
	// StaleAfter bounds the age of the newest heartbeat before every new
	// connection is rejected; zero means the identity package default.
	StaleAfter time.Duration
	// SweepInterval is how often all connections are listed and those of
	// inactive identities closed; zero means DefaultSweepInterval.
	SweepInterval time.Duration
	// NoSyncAlways keeps JetStream's default periodic fsync (every two
	// minutes in nats-server 2.15) in place of an fsync on every write. It
	// exists for benchmarks: an acknowledged write may be lost on power
	// failure when it is set.
	NoSyncAlways bool
	// DenialInterval is the least time between two reports of denials of
	// one kind by one identity or host; zero means DefaultDenialInterval.
	DenialInterval time.Duration
	// OnError receives errors of the broker's background work (callout
	// replies, kicks, heartbeats); nil drops them. It must not block.
	OnError func(error)
}

// Broker is a running embedded server with registry-based authorization.
type Broker struct {
	cfg    Config
	srv    *server.Server
	admin  *nats.Conn
	authNC *nats.Conn
	sysNC  *nats.Conn
	js     jetstream.JetStream
	kv     jetstream.KeyValue
	view   *identity.View
	issuer nkeys.KeyPair
	conns  *connTable
	cancel context.CancelFunc
	wg     sync.WaitGroup

	violations *violationQueue
	denials    *denialLimiter
	denialMu   sync.Mutex
	denialFns  []func(Denial)

	// lateKeys limits the callouts waiting for the registry view to show
	// an nkey it does not know yet; see [Broker.handleCallout].
	lateKeys     chan struct{}
	lateKeyHosts hostSlots
}

// newBroker returns a broker around srv with its denial reporting set up.
func newBroker(cfg Config, srv *server.Server, issuer nkeys.KeyPair, q *violationQueue) *Broker {
	b := &Broker{cfg: cfg, srv: srv, issuer: issuer, conns: newConnTable(), violations: q,
		lateKeys: make(chan struct{}, maxLateKeyWaits)}
	b.denials = newDenialLimiter(cfg.DenialInterval, b.reportDenial)

	return b
}

// internalUsers are the password users the broker itself connects as. They
// bypass the callout, and their passwords are random per start and never
// leave the process.
type internalUsers struct {
	admin, auth, sys string
}

// ErrConfig reports an invalid broker configuration.
var ErrConfig = errors.New("broker: invalid configuration")

// Start starts the embedded server, connects the broker's internal users,
// creates the registry bucket if missing, loads the registry view and
// starts serving auth callout requests. Stop it with [Broker.Shutdown].
func Start(ctx context.Context, cfg Config) (*Broker, error) {
	if cfg.DataDir == "" || len(cfg.Root) == 0 {
		return nil, fmt.Errorf("%w: DataDir and Root are required", ErrConfig)
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
	issuer, err := nkeys.CreateAccount()
	if err != nil {
		return nil, fmt.Errorf("generating callout issuer key: %w", err)
	}
	users := internalUsers{admin: randomSecret(), auth: randomSecret(), sys: randomSecret()}
	q := newViolationQueue()
	srv, err := newServer(cfg, issuer, users, q)
	if err != nil {
		return nil, err
	}
	b := newBroker(cfg, srv, issuer, q)
	if err := b.start(ctx, users); err != nil {
		b.Shutdown()
		return nil, err
	}

	return b, nil
}

func randomSecret() string {
	var b [24]byte
	_, _ = rand.Read(b[:])

	return hex.EncodeToString(b[:])
}

// newServer builds and starts the nats-server with three accounts and the
// auth callout pointing at the AUTH account.
func newServer(cfg Config, issuer nkeys.KeyPair, u internalUsers, q *violationQueue,
) (*server.Server, error) {
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
	if err := checkListenAddr(cfg.Host, cfg.Port); err != nil {
		return nil, err
	}
	opts := &server.Options{}
	if err := opts.ProcessConfigString(conf); err != nil {
		return nil, fmt.Errorf("building nats-server options: %w", err)
	}
	opts.ServerName = "nodex"
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

	srv, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("creating nats-server: %w", err)
	}
	installViolationLog(srv, q, false, false)
	go srv.Start()
	if !srv.ReadyForConnections(10 * time.Second) {
		srv.Shutdown()
		return nil, fmt.Errorf("starting nats-server on %s:%d: not ready after 10s",
			cfg.Host, cfg.Port)
	}

	return srv, nil
}

// ErrListen reports that the NATS server's client address cannot be
// listened on; the error that wraps it also wraps the cause.
var ErrListen = errors.New("nats-server cannot listen")

// checkListenAddr fails when host:port cannot be listened on, for example
// because another process uses the port. nats-server reports a listen
// error only to its log and then never becomes ready, so without this check
// the start would fail after 10 s without the cause. A process that takes
// the port between this check and the server's own listen still leads to
// that slow failure. Port 0 needs no check.
func checkListenAddr(host string, port int) error {
	if port == 0 {
		return nil
	}
	addr := net.JoinHostPort(host, strconv.Itoa(port))
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		// The *net.OpError repeats the address; its Err is the cause alone,
		// such as "bind: address already in use".
		var opErr *net.OpError
		if errors.As(err, &opErr) {
			err = opErr.Err
		}
		return fmt.Errorf("%w on %s: %w", ErrListen, addr, err)
	}

	return ln.Close()
}

func (b *Broker) start(ctx context.Context, u internalUsers) error {
	var err error
	url := b.srv.ClientURL()
	if b.admin, err = nats.Connect(url, nats.UserInfo("nodex-admin", u.admin),
		nats.Name("nodex-broker-admin")); err != nil {
		return fmt.Errorf("connecting broker admin user: %w", err)
	}
	if b.authNC, err = nats.Connect(url, nats.UserInfo("nodex-auth", u.auth),
		nats.Name("nodex-broker-auth")); err != nil {
		return fmt.Errorf("connecting broker callout user: %w", err)
	}
	if b.sysNC, err = nats.Connect(url, nats.UserInfo("nodex-sys", u.sys),
		nats.Name("nodex-broker-sys")); err != nil {
		return fmt.Errorf("connecting broker system user: %w", err)
	}
	if b.js, err = jetstream.New(b.admin); err != nil {
		return fmt.Errorf("creating JetStream context: %w", err)
	}
	if b.kv, err = identity.EnsureBucket(ctx, b.js); err != nil {
		return err
	}
	if b.view, err = identity.Watch(ctx, b.kv, b.cfg.Root,
		identity.ViewOptions{StaleAfter: b.cfg.StaleAfter}); err != nil {
		return err
	}
	b.view.OnChange(b.onIdentityChange)
	if err := b.subscribeConnEvents(); err != nil {
		return err
	}
	if err := b.subscribeConsumerAudit(); err != nil {
		return err
	}
	if _, err := b.authNC.Subscribe(server.AuthCalloutSubject, b.handleCallout); err != nil {
		return fmt.Errorf("subscribing to %s: %w", server.AuthCalloutSubject, err)
	}
	if err := b.authNC.Flush(); err != nil {
		return fmt.Errorf("flushing callout subscription: %w", err)
	}
	b.startBackground()

	return nil
}

// startBackground starts the connection sweeps and, given an authority
// key, the heartbeat. Shutdown stops both.
func (b *Broker) startBackground() {
	ctx, cancel := context.WithCancel(context.Background())
	b.cancel = cancel
	sweepEvery := b.cfg.SweepInterval
	if sweepEvery <= 0 {
		sweepEvery = DefaultSweepInterval
	}
	b.wg.Go(func() { b.runSweeps(sweepEvery, ctx.Done()) })
	b.wg.Go(func() { b.runViolations(ctx.Done()) })

	if b.cfg.Authority == nil {
		return
	}
	interval := b.cfg.HeartbeatInterval
	if interval <= 0 {
		interval = identity.DefaultHeartbeatInterval
	}
	w := identity.NewAuthorityWriter(b.kv, *b.cfg.Authority)
	w.Digest = b.view.Digest
	// Reading the delegation from the view means a renewal written by the
	// holder of the root key reaches the writer without a restart.
	w.Delegation = b.view.Delegation
	// Every node of a cluster holds the authority key, so the nodes share
	// the heartbeat through its lease and a stopped node leaves readers
	// fresh.
	w.Standby = true
	b.wg.Go(func() {
		w.RunHeartbeat(ctx, interval, func(err error) { b.cfg.OnError(err) })
	})
}

// ClientURL returns the URL clients connect to, e.g. nats://127.0.0.1:4222.
func (b *Broker) ClientURL() string { return b.srv.ClientURL() }

// Server returns the embedded server.
func (b *Broker) Server() *server.Server { return b.srv }

// AdminConn returns the broker's own connection in the NODEX account. It
// bypasses the permission table, so only the composition root (nodex dev)
// may use it, to create streams and publish the bootstrap registry.
func (b *Broker) AdminConn() *nats.Conn { return b.admin }

// JetStream returns a JetStream context on [Broker.AdminConn].
func (b *Broker) JetStream() jetstream.JetStream { return b.js }

// Registry returns the registry KV bucket.
func (b *Broker) Registry() jetstream.KeyValue { return b.kv }

// View returns the broker's verified registry view.
func (b *Broker) View() *identity.View { return b.view }

// Shutdown stops the heartbeat, closes the broker's connections and shuts
// the server down, waiting until JetStream has flushed.
func (b *Broker) Shutdown() {
	if b.cancel != nil {
		b.cancel()
	}
	b.wg.Wait()
	if b.view != nil {
		b.view.Close()
	}
	for _, nc := range []*nats.Conn{b.authNC, b.sysNC, b.admin} {
		if nc != nil {
			nc.Close()
		}
	}
	b.srv.Shutdown()
	b.srv.WaitForShutdown()
}
