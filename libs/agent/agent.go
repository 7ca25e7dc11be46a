// Package agent is the Go SDK of a NodeX agent: it loads the agent's
// credentials, connects as that identity, submits code to codesec, runs the
// sealed bundle in the sandbox, retrieves provider keys from the keyvault
// and reports the agent's own security events to the monitor. Every call
// travels in a sealed, signed envelope (libs/bus) and gets its own
// OpenTelemetry client span, whose context the bus carries to the service.
// A run that the sandbox rejects with sandbox_busy is sent again after a
// backoff until the caller's deadline.
package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/nodexsec/nodex/libs/errs"
	"github.com/nodexsec/nodex/libs/identity"
	"github.com/nodexsec/nodex/libs/party"
)

// Subjects and the roles that must serve them.
const (
	SubjectSubmit   = "nodex.v1.codesec.submit"
	SubjectExec     = "nodex.v1.sandbox.exec"
	SubjectRetrieve = "nodex.v1.keyvault.retrieve"
	SubjectReport   = "nodex.v1.monitor.report"

	RoleCodesec  = "service:codesec"
	RoleSandbox  = "service:sandbox"
	RoleKeyvault = "service:keyvault"
	RoleMonitor  = "service:monitor"
)

// DefaultRunTimeout bounds a sandbox run when the caller's context has no
// deadline. It covers the sandbox-runner's maximum wall time of 300 s plus
// start-up and scanning.
const DefaultRunTimeout = 320 * time.Second

// tracerName names the tracer of every span this package starts.
const tracerName = "github.com/nodexsec/nodex/libs/agent"

// Config names the agent's credentials and the NATS server.
type Config struct {
	// URL is the NATS server URL, e.g. nats://127.0.0.1:4222.
	URL string
	// Creds are the agent's credentials. When nil, CredsFile is loaded.
	Creds *identity.Credentials
	// CredsFile is the path of a credentials file (mode 0600).
	CredsFile string
	// Log receives connection-level log lines; nil discards them.
	Log *slog.Logger
	// Busy is the backoff of runs rejected with sandbox_busy.
	Busy Backoff
	// NATSOptions are extra connection options, for example nats.RootCAs
	// with a deployment's CA certificate for a tls:// URL; without one, TLS
	// trusts the system roots (SSL_CERT_FILE). A nats.ClosedHandler here
	// has no effect, because the SDK sets its own to notice a closed
	// connection.
	NATSOptions []nats.Option
}

// Agent is a connected agent. It is safe for concurrent use.
type Agent struct {
	p       *party.Party
	tracer  trace.Tracer
	jobs    jobs
	backoff Backoff
	// closed is closed when the NATS connection is closed for good, by
	// Close or by the server (a suspended identity's connections are
	// closed and cannot reconnect).
	closed chan struct{}

	busyRetries atomic.Uint64
	busyGiveUps atomic.Uint64
}

// Open loads the credentials, connects to NATS as the agent and waits for
// the verified registry view. Close releases it. When the broker keeps
// rejecting the credentials for authRetryTimeout, Open fails with an error
// that matches nats.ErrAuthorization.
func Open(ctx context.Context, cfg Config) (*Agent, error) {
	creds := cfg.Creds
	if creds == nil {
		if cfg.CredsFile == "" {
			return nil, errors.New("agent: no credentials: set Config.Creds or Config.CredsFile")
		}
		c, err := identity.LoadCreds(cfg.CredsFile)
		if err != nil {
			return nil, fmt.Errorf("agent: loading credentials %s: %w", cfg.CredsFile, err)
		}
		creds = c
	}
	if cfg.URL == "" {
		return nil, errors.New("agent: no NATS URL: set Config.URL, e.g. nats://127.0.0.1:4222")
	}
	closed := make(chan struct{})
	var closeOnce sync.Once
	onClosed := nats.ClosedHandler(func(*nats.Conn) { closeOnce.Do(func() { close(closed) }) })
	opts := append(slices.Clone(cfg.NATSOptions), onClosed)
	// party.Open's connection errors name the URL and the identity.
	p, err := openParty(ctx, party.Config{URL: cfg.URL, Creds: creds, Log: cfg.Log,
		NATSOptions: opts})
	if err != nil {
		return nil, fmt.Errorf("agent: %w", err)
	}
	if err := awaitFresh(ctx, p.View); err != nil {
		_ = p.Close(context.WithoutCancel(ctx))
		return nil, fmt.Errorf("agent: connecting %q to %s: %w", creds.ID, cfg.URL, err)
	}

	return &Agent{p: p, tracer: otel.Tracer(tracerName), backoff: cfg.Busy.withDefaults(),
		closed: closed}, nil
}

// authRetryTimeout bounds how long Open retries a rejected connection.
const authRetryTimeout = 5 * time.Second

// openParty opens the party, retrying while the server rejects the
// credentials. A rejection is not always final: while a broker node
// fails over, the others can fail closed for some seconds until the
// registry heartbeat is written again, and a broker admits a just-created
// identity only once its registry watch has the record. A suspended or
// revoked agent stays rejected and fails after authRetryTimeout.
func openParty(ctx context.Context, cfg party.Config) (*party.Party, error) {
	deadline := time.Now().Add(authRetryTimeout)
	for {
		p, err := party.Open(ctx, cfg)
		if err == nil || !errors.Is(err, nats.ErrAuthorization) || time.Now().After(deadline) {
			return p, err
		}
		select {
		case <-ctx.Done():
			return nil, err
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// freshTimeout bounds the wait for a fresh registry view: a few heartbeat
// intervals (2 s by default).
const freshTimeout = 10 * time.Second

// awaitFresh waits until view has seen a heartbeat that matches its state.
// A view opened just after a registry change holds a heartbeat signed
// before the change, which does not count as fresh, and every request
// would fail until the next heartbeat arrives.
func awaitFresh(ctx context.Context, view *identity.View) error {
	ctx, cancel := context.WithTimeout(ctx, freshTimeout)
	defer cancel()
	for {
		err := view.Fresh()
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for a fresh registry view: %w", err)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// ID returns the agent's identity id.
func (a *Agent) ID() string { return a.p.Creds.ID }

// Party returns the underlying connection, for requests this package does
// not wrap.
func (a *Agent) Party() *party.Party { return a.p }

// Close drains pending requests and closes the connection.
func (a *Agent) Close(ctx context.Context) error { return a.p.Close(ctx) }

// request sends one request inside a client span; libs/bus adds its own
// span and carries the trace to the service. A coded error reply comes
// back as *errs.Error.
func (a *Agent) request(ctx context.Context, span, subject, role string, req, resp any) error {
	ctx, sp := a.tracer.Start(ctx, span, trace.WithSpanKind(trace.SpanKindClient),
		trace.WithAttributes(
			attribute.String("messaging.destination.name", subject),
			attribute.String("nodex.identity", a.ID()),
		))
	defer sp.End()

	err := a.requestOpen(ctx, subject, role, req, resp)
	if err != nil {
		// Only the coded name goes into the span: an error's text may
		// quote request data.
		name := errs.From(err).Name
		sp.SetAttributes(attribute.String("nodex.error", name))
		sp.SetStatus(codes.Error, name)
	}

	return err
}

// ErrConnectionClosed is returned by a request that was waiting when the
// agent's connection closed for good. The server closes the connections
// of a suspended or revoked identity and rejects its reconnects, so a
// reply would never arrive.
var ErrConnectionClosed = errors.New("agent: connection closed; the identity may be suspended or revoked")

// requestOpen sends the request and stops waiting for the reply as soon as
// the connection closes, instead of at the deadline.
func (a *Agent) requestOpen(ctx context.Context, subject, role string, req, resp any) error {
	ctx, cancel := context.WithCancelCause(ctx)
	// The deferred cancel ends the goroutine once the request returns.
	defer cancel(nil)
	go func() {
		select {
		case <-a.closed:
			cancel(ErrConnectionClosed)
		case <-ctx.Done():
		}
	}()

	err := a.p.Bus.Request(ctx, subject, role, req, resp)
	if err != nil && errors.Is(context.Cause(ctx), ErrConnectionClosed) {
		if last := a.p.NC.LastError(); last != nil {
			return fmt.Errorf("%w (last connection error: %v)", ErrConnectionClosed, last)
		}
		return ErrConnectionClosed
	}

	return err
}
