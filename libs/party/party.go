// Package party opens everything one NodeX party needs to take part in the
// system: its NATS connection as its own identity, a verified watch of the
// identity registry, the envelope codec, the secure bus client, its security
// event publisher, and, for services that decide locally, the embedded policy
// engine watching the policy bucket.
//
// Every service's main and `nodex dev` call [Open], so one process or many run
// the same start-up path.
package party

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/nodexsec/nodex/libs/authz"
	"github.com/nodexsec/nodex/libs/broker"
	"github.com/nodexsec/nodex/libs/bus"
	"github.com/nodexsec/nodex/libs/envelope"
	"github.com/nodexsec/nodex/libs/events"
	"github.com/nodexsec/nodex/libs/identity"
	"github.com/nodexsec/nodex/libs/logx"
)

// Config names the party's credentials and its NATS server.
type Config struct {
	// URL is the NATS server URL, e.g. nats://127.0.0.1:4222.
	URL string
	// Creds are the party's credentials; see identity.LoadCreds.
	Creds *identity.Credentials
	// Log receives the party's own log lines; nil discards them.
	Log *slog.Logger
	// Authz, when set, builds an embedded policy engine that watches the
	// NODEX_POLICY bucket and audits every decision as an event.
	Authz bool
	// StaleAfter bounds the registry view's age; zero means the identity
	// package's default.
	StaleAfter time.Duration
	// RegistryStateFile, if set, keeps the highest registry record versions
	// this party accepted, so that after a restart it still rejects a
	// rolled-back record.
	RegistryStateFile string
	// Replicas is the replica count of the wrap bucket if this party is
	// the first to open it (in a cluster the broker creates it first);
	// zero means 1.
	Replicas int
	// NATSOptions are applied to the connection after the defaults.
	NATSOptions []nats.Option
}

// Party is an opened participant. Close releases it in reverse order.
type Party struct {
	Creds  *identity.Credentials
	NC     *nats.Conn
	JS     jetstream.JetStream
	View   *identity.View
	Codec  *envelope.Codec
	Bus    *bus.Client
	Events *events.Publisher
	// Authz is nil unless Config.Authz was set.
	Authz *authz.Engine
	Log   *slog.Logger

	closers []func(context.Context) error
}

// Open connects the party and returns once the registry and, if asked, the
// policy set are loaded. On error everything opened so far is closed.
func Open(ctx context.Context, cfg Config) (_ *Party, err error) {
	if cfg.Creds == nil {
		return nil, errors.New("party: no credentials given: load them with identity.LoadCreds")
	}
	if cfg.Log == nil {
		cfg.Log = logx.Discard()
	}
	p := &Party{Creds: cfg.Creds, Log: cfg.Log.With(logx.KeyIdentity, cfg.Creds.ID)}
	defer func() {
		if err != nil {
			_ = p.Close(context.WithoutCancel(ctx))
		}
	}()

	if err := p.connect(ctx, cfg); err != nil {
		return nil, err
	}
	if err := p.openBus(ctx, cfg); err != nil {
		return nil, err
	}
	if cfg.Authz {
		if err := p.openAuthz(ctx); err != nil {
			return nil, err
		}
	}

	return p, nil
}

func (p *Party) connect(ctx context.Context, cfg Config) error {
	opts := append([]nats.Option{nats.ErrorHandler(p.natsError)}, cfg.NATSOptions...)
	nc, err := broker.Connect(ctx, cfg.URL, cfg.Creds, opts...)
	if err != nil {
		return err
	}
	p.NC = nc
	p.closers = append(p.closers, func(context.Context) error { nc.Close(); return nil })

	js, err := jetstream.New(nc)
	if err != nil {
		return fmt.Errorf("party: creating JetStream context for %q: %w", cfg.Creds.ID, err)
	}
	p.JS = js

	kv, err := js.KeyValue(ctx, identity.Bucket)
	if err != nil {
		return fmt.Errorf("party: opening registry bucket %s: %w", identity.Bucket, err)
	}
	view, err := identity.Watch(ctx, kv, cfg.Creds.RootKey, identity.ViewOptions{
		StaleAfter: cfg.StaleAfter, StateFile: cfg.RegistryStateFile,
	})
	if err != nil {
		return err
	}
	p.View = view
	p.closers = append(p.closers, func(context.Context) error { view.Close(); return nil })

	return waitFresh(ctx, view)
}

// freshWait bounds how long Open waits for a fresh registry view: a view
// opened just after a registry change counts as fresh only from the next
// heartbeat, a few seconds later.
const freshWait = 15 * time.Second

// waitFresh returns once view is fresh, so that the party's first messages
// are not refused for a stale view, or an error after freshWait.
func waitFresh(ctx context.Context, view *identity.View) error {
	deadline := time.Now().Add(freshWait)
	for {
		err := view.Fresh()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("party: registry view not fresh after %s: %w", freshWait, err)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("party: waiting for a fresh registry view: %w", ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func (p *Party) openBus(ctx context.Context, cfg Config) error {
	// Agents may read the wrap bucket only by direct get of single keys, so
	// they bind without the stream info request.
	var wraps *bus.WrapStore
	if cfg.Creds.Kind == identity.KindAgent {
		wraps = bus.BindWrapStore(p.JS)
	} else {
		var err error
		if wraps, err = bus.OpenWrapStore(ctx, p.JS,
			bus.WrapStoreOptions{Replicas: cfg.Replicas}); err != nil {
			return err
		}
	}
	// The rejection hook runs before the publisher exists; it reads p.Events
	// when a rejection happens.
	codec, err := envelope.New(envelope.Config{
		Keys:      &identity.Keyring{Creds: cfg.Creds, View: p.View},
		Directory: &identity.Directory{View: p.View},
		Wraps:     wraps,
		OnReject:  p.reportRejection,
	})
	if err != nil {
		return fmt.Errorf("party: creating envelope codec for %q: %w", cfg.Creds.ID, err)
	}
	p.Codec = codec

	client, err := bus.New(bus.Config{Conn: p.NC, Codec: codec,
		OnError: func(ctx context.Context, subject string, err error) {
			p.Log.ErrorContext(ctx, "request failed", logx.KeySubject, subject, logx.Err(err))
		},
	})
	if err != nil {
		return fmt.Errorf("party: creating bus client for %q: %w", cfg.Creds.ID, err)
	}
	p.Bus = client
	p.closers = append(p.closers, client.Drain)

	p.Events = events.NewPublisher(client, cfg.Creds.ID, events.PublisherOptions{
		OnLost: func(ev events.SecurityEvent, err error) {
			p.Log.Warn("security event lost", logx.KeyEventType, ev.Type, logx.Err(err))
		},
	})
	p.closers = append(p.closers, p.Events.Close)

	return nil
}

func (p *Party) openAuthz(ctx context.Context) error {
	// Only values signed by the policy identity are loaded, so the operator
	// of the NATS server cannot grant roles by writing the bucket.
	engine, w, err := authz.Open(ctx, p.JS, authz.Options{Audit: authz.EventSink(p.Events)},
		authz.WatchOptions{
			Verifier: &authz.Verifier{Directory: &identity.Directory{View: p.View}},
			OnLoad:   func(rev string) { p.Log.Info("policy loaded", "revision", rev) },
			OnError: func(err error) {
				p.Log.Error("policy reload failed; previous policy keeps deciding", logx.Err(err))
			},
		})
	if err != nil {
		return err
	}
	p.Authz = engine
	p.closers = append(p.closers, func(context.Context) error { w.Stop(); return nil })

	return nil
}

// reportRejection turns an envelope rejection into a security event. The
// event names the transport origin only: a rejected message proves nothing
// about the sender it claims.
func (p *Party) reportRejection(r envelope.Rejection) {
	p.Log.Warn("envelope rejected", logx.KeySubject, r.Subject,
		"reason", ReasonCode(r.Reason), logx.Err(r.Err))
	// Only services publish events; agents and operators have no right to
	// the events subjects, so their rejections stay in their own log.
	if p.Events == nil || p.Creds.Kind != identity.KindService {
		return
	}
	p.Events.Publish(context.Background(), RejectionEvent(r))
}

// natsError logs asynchronous NATS errors, such as permission violations,
// which nats.go would otherwise print to standard error.
func (p *Party) natsError(_ *nats.Conn, sub *nats.Subscription, err error) {
	subject := ""
	if sub != nil {
		subject = sub.Subject
	}
	p.Log.Warn("nats asynchronous error", logx.KeySubject, subject, logx.Err(err))
}

// Close drains the bus and closes everything Open opened, in reverse order.
func (p *Party) Close(ctx context.Context) error {
	var errs []error
	for i := len(p.closers) - 1; i >= 0; i-- {
		errs = append(errs, p.closers[i](ctx))
	}
	p.closers = nil

	return errors.Join(errs...)
}
