// Package devrun runs every NodeX service in one process on the embedded
// NATS server: the composition behind `nodex dev`. Each service still gets
// its own identity, NATS connection and envelope keys, exactly as it would
// in its own container, so the single process exercises the same security
// boundaries between services.
package devrun

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	"go.opentelemetry.io/otel"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/nodexsec/nodex/libs/conf"
	"github.com/nodexsec/nodex/libs/logx"
	"github.com/nodexsec/nodex/libs/party"
	"github.com/nodexsec/nodex/libs/stack"
	"github.com/nodexsec/nodex/libs/telemetry"
)

// Config configures [Run].
type Config struct {
	// Home is the state folder (default ./.nodex): identities, the key
	// encryption key and the JetStream store.
	Home string
	// Host and Port are where the embedded NATS server listens. Port 0
	// picks a free port.
	Host string
	Port int
	// MetricsAddr is the monitor's Prometheus endpoint; empty disables it.
	MetricsAddr string
	// InsecureNoSandbox runs bundles without the sandbox. Development only;
	// every such run is logged as insecure.
	InsecureNoSandbox bool
	// SandboxInit is the sandbox-init binary; empty means sandbox-init beside
	// the running executable, where `make build` puts it.
	SandboxInit string
	// Log receives every service's log lines.
	Log *slog.Logger
	// Getenv reads the OpenTelemetry exporter settings
	// (OTEL_EXPORTER_OTLP_ENDPOINT, OTEL_TRACES_EXPORTER=console); nil reads
	// none, so nothing is exported.
	Getenv conf.Getenv
	// SpanExporter, when set, receives every finished span of every
	// service as it ends; tests pass tracetest's in-memory exporter.
	SpanExporter sdktrace.SpanExporter
	// Ready, if set, is called once every service serves, with the NATS URL.
	Ready func(url string)
}

// URLFile is the file under Home where Run writes the NATS URL, so that
// clients started in the same folder find the server.
const URLFile = "nats.url"

// service is one service started by Run.
type service struct {
	name  string
	id    string // identity id
	authz bool   // needs the embedded policy engine
	// run runs the service until ctx ends. It calls ready once the service
	// serves its subjects, so that later services can depend on it.
	run func(ctx context.Context, env *env, p *party.Party, ready func()) error
}

// readyTimeout bounds how long Run waits for one service to serve.
const readyTimeout = 60 * time.Second

// env is what starters share.
type env struct {
	cfg   Config
	stack *stack.Stack
	log   *slog.Logger
	tel   *telemetry.Provider
}

// Run starts the stack and every service, blocks until ctx ends, then stops
// the services and the server. It returns the first service error.
func Run(ctx context.Context, cfg Config) error {
	if cfg.Home == "" {
		cfg.Home = ".nodex"
	}
	if cfg.Log == nil {
		cfg.Log = logx.Discard()
	}
	tel, err := telemetry.Setup(ctx, telemetry.Config{ServiceName: "nodex-dev", Getenv: cfg.Getenv,
		SpanExporter: cfg.SpanExporter})
	if err != nil {
		return err
	}
	defer func() { _ = tel.Shutdown(context.WithoutCancel(ctx)) }()
	// The services in this process share one tracer provider; spans carry
	// the service in their names and attributes.
	otel.SetTracerProvider(tel.TracerProvider())

	st, err := stack.Start(ctx, stack.Config{
		Dir: cfg.Home, Host: cfg.Host, Port: cfg.Port, Log: cfg.Log.With(logx.KeyComponent, "stack"),
	})
	if err != nil {
		return err
	}
	defer st.Close()
	e := &env{cfg: cfg, stack: st, log: cfg.Log, tel: tel}

	url := st.URL()
	if err := os.WriteFile(filepath.Join(cfg.Home, URLFile), []byte(url+"\n"), 0o600); err != nil {
		return fmt.Errorf("writing %s: %w", URLFile, err)
	}

	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var wg sync.WaitGroup
	var parties []*party.Party
	defer func() {
		cancel(nil)
		wg.Wait()
		closeCtx, stop := context.WithTimeout(context.Background(), 10*time.Second)
		defer stop()
		for i := len(parties) - 1; i >= 0; i-- {
			_ = parties[i].Close(closeCtx)
		}
	}()

	for _, svc := range services() {
		p, err := e.start(ctx, svc, &wg, cancel)
		if err != nil {
			return fmt.Errorf("starting %s: %w", svc.name, err)
		}
		parties = append(parties, p)
	}
	if cfg.Ready != nil {
		cfg.Ready(url)
	}
	<-ctx.Done()
	if cause := context.Cause(ctx); cause != nil && !errors.Is(cause, context.Canceled) {
		return cause
	}

	return nil
}

// start opens the service's party, runs it in a goroutine and waits until
// it serves. A service that stops on its own while ctx is live cancels
// everything with its error.
func (e *env) start(ctx context.Context, svc service, wg *sync.WaitGroup,
	cancel context.CancelCauseFunc,
) (*party.Party, error) {
	p, err := e.stack.Open(ctx, svc.id, svc.authz)
	if err != nil {
		return nil, err
	}
	ready := make(chan struct{})
	var once sync.Once
	stopped := make(chan error, 1)
	wg.Add(1)
	go func() {
		defer wg.Done()
		err := svc.run(ctx, e, p, func() { once.Do(func() { close(ready) }) })
		if ctx.Err() == nil {
			if err == nil {
				err = errors.New("stopped unexpectedly")
			}
			cancel(fmt.Errorf("service %s: %w", svc.name, err))
		}
		stopped <- err
	}()

	select {
	case <-ready:
		e.log.Info("service started", logx.KeyService, svc.name)
		return p, nil
	case err := <-stopped:
		_ = p.Close(context.WithoutCancel(ctx))
		return nil, err
	case <-time.After(readyTimeout):
		_ = p.Close(context.WithoutCancel(ctx))
		return nil, fmt.Errorf("not serving after %s", readyTimeout)
	}
}

// serviceLog derives a service's logger.
func (e *env) serviceLog(name string) *slog.Logger {
	return e.log.With(logx.KeyComponent, name)
}
