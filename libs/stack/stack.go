// Package stack starts the shared ground of a single-host NodeX deployment:
// the identities (created on first start, loaded after), the embedded NATS
// server with JetStream and registry-driven authorization, the registry
// records, the role epochs that multi-reader messages are encrypted to, and
// the streams and buckets every service expects. `nodex dev` and the
// cross-service tests start the same stack, then open one [party.Party] per
// service on it.
package stack

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/nodexsec/nodex/libs/broker"
	"github.com/nodexsec/nodex/libs/bus"
	"github.com/nodexsec/nodex/libs/events"
	"github.com/nodexsec/nodex/libs/identity"
	"github.com/nodexsec/nodex/libs/logx"
	"github.com/nodexsec/nodex/libs/party"
)

// RoleMembers returns the first-epoch members of every role that messages
// are encrypted to: the audit role (events and threats, read by monitor,
// incident and operators) and one role per service, which requests to that
// service are addressed to. The operator joins every epoch it creates, since
// chaining the next epoch needs the previous private key.
func RoleMembers() map[string][]string {
	roles := map[string][]string{
		events.AudienceRole: {"monitor", "incident", identity.OperatorID},
	}
	for _, svc := range identity.Services {
		roles[identity.ServiceRole(svc)] = []string{svc}
	}

	return roles
}

// Config configures [Start]. Dir is required.
type Config struct {
	// Dir holds all state: Dir/identities (keys and credentials, 0700) and
	// Dir/jetstream (the server's store).
	Dir string
	// Host and Port are where NATS listens. Host defaults to 127.0.0.1; Port
	// 0 picks a free port, which tests use.
	Host string
	Port int
	// HeartbeatInterval and StaleAfter tune the registry heartbeat; zero
	// means the identity package's defaults.
	HeartbeatInterval time.Duration
	StaleAfter        time.Duration
	// RenewCheckInterval is how often the stack, which holds the root key,
	// checks the authority delegation and renews it once less than
	// identity.DefaultRenewBefore remains. Zero means
	// DefaultRenewCheckInterval.
	RenewCheckInterval time.Duration
	// Now returns the current time for delegation renewal; nil means
	// time.Now.
	Now func() time.Time
	// Log receives the stack's own log lines; nil discards them.
	Log *slog.Logger
}

// DefaultRenewCheckInterval is how often a stack checks whether the
// authority delegation is due for renewal. An hour is small against the
// 30-day renewal margin, so a failed check has hundreds of retries.
const DefaultRenewCheckInterval = time.Hour

// Stack is a running single-host deployment base.
type Stack struct {
	cfg    Config
	Setup  *identity.Setup
	Broker *broker.Broker
	Admin  *identity.Admin

	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// Start creates or loads the state under cfg.Dir and starts the server. It
// returns once the bootstrap identities are visible in the broker's view.
func Start(ctx context.Context, cfg Config) (*Stack, error) {
	if cfg.Dir == "" {
		return nil, errors.New("stack: no state folder given")
	}
	if cfg.Host == "" {
		cfg.Host = "127.0.0.1"
	}
	if cfg.Log == nil {
		cfg.Log = logx.Discard()
	}
	if err := os.MkdirAll(cfg.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("stack: creating state folder %s: %w", cfg.Dir, err)
	}
	setup, err := identity.Bootstrap(filepath.Join(cfg.Dir, "identities"))
	if err != nil {
		return nil, err
	}

	b, err := broker.Start(ctx, broker.Config{
		DataDir: filepath.Join(cfg.Dir, "jetstream"), Host: cfg.Host, Port: cfg.Port,
		Root: setup.Root.Public(), Authority: &setup.Authority,
		HeartbeatInterval: cfg.HeartbeatInterval, StaleAfter: cfg.StaleAfter,
		OnError: func(err error) { cfg.Log.Warn("broker", logx.Err(err)) },
	})
	if err != nil {
		return nil, err
	}
	s := &Stack{cfg: cfg, Setup: setup, Broker: b, Admin: identity.NewAdmin(b.Registry(), setup.Root)}
	s.Admin.Now = cfg.Now
	if err := s.prepare(ctx); err != nil {
		b.Shutdown()
		return nil, err
	}
	renewCtx, cancel := context.WithCancel(context.Background())
	s.cancel = cancel
	s.wg.Go(func() { s.runRenewal(renewCtx) })

	return s, nil
}

// runRenewal renews the authority delegation before it expires, until ctx
// ends. Without it a stack that runs for more than 30 days would see the
// delegation expire and every party fail closed.
func (s *Stack) runRenewal(ctx context.Context) {
	every := s.cfg.RenewCheckInterval
	if every <= 0 {
		every = DefaultRenewCheckInterval
	}
	t := time.NewTicker(every)
	defer t.Stop()

	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		d, renewed, err := s.Admin.RenewAuthority(ctx, s.Setup.Authority.Public(),
			identity.AuthorityValidity, identity.DefaultRenewBefore)
		switch {
		case err != nil && ctx.Err() == nil:
			s.cfg.Log.Warn("authority renewal failed", logx.Err(err))
		case renewed:
			s.cfg.Log.Info("authority delegation renewed", logx.KeyNotAfter, d.NotAfter)
		}
	}
}

func (s *Stack) prepare(ctx context.Context) error {
	js := s.Broker.JetStream()
	if err := s.Setup.Publish(ctx, s.Broker.Registry()); err != nil {
		return fmt.Errorf("stack: publishing bootstrap identities: %w", err)
	}
	for role, members := range RoleMembers() {
		if err := s.ensureRole(ctx, role, members); err != nil {
			return err
		}
	}
	if _, err := events.EnsureStream(ctx, js, events.StreamOptions{}); err != nil {
		return err
	}
	if _, err := bus.NewWrapStore(ctx, js, 0); err != nil {
		return err
	}

	// The broker's view follows the registry bucket through a KV watch,
	// which takes milliseconds on an idle host. The bound is generous,
	// because a starved host (tests under -race beside other suites) can
	// take seconds.
	const visibleWithin = 30 * time.Second
	deadline := time.Now().Add(visibleWithin)
	for _, id := range append([]string{identity.DemoAgentID, identity.OperatorID},
		identity.Services...) {
		for {
			if _, err := s.Broker.View().Active(id); err == nil {
				break
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("stack: identity %q not visible in the registry after %s",
					id, visibleWithin)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}

	return nil
}

// ensureRole starts the first epoch of role when there is none. A later
// membership change is an operator action that starts a new epoch.
func (s *Stack) ensureRole(ctx context.Context, role string, ids []string) error {
	cur, err := s.Admin.Role(ctx, role)
	if err != nil {
		return fmt.Errorf("stack: reading role %s: %w", role, err)
	}
	if cur != nil {
		return nil
	}
	var members []*identity.Identity
	for _, id := range ids {
		m, err := s.Admin.Get(ctx, id)
		if err != nil {
			return fmt.Errorf("stack: reading member %q of role %s: %w", id, role, err)
		}
		members = append(members, m)
	}
	opener := s.Setup.Creds[identity.OperatorID]
	if _, err := s.Admin.StartRoleEpoch(ctx, role, opener, members); err != nil {
		return fmt.Errorf("stack: starting role %s: %w", role, err)
	}

	return nil
}

// URL returns the NATS client URL.
func (s *Stack) URL() string { return s.Broker.ClientURL() }

// CredsPath returns the credentials file of a built-in identity.
func (s *Stack) CredsPath(id string) string { return s.Setup.CredsPath(id) }

// Open opens a party for the built-in identity id (a service token such as
// "codesec", identity.DemoAgentID or identity.OperatorID).
func (s *Stack) Open(ctx context.Context, id string, withAuthz bool) (*party.Party, error) {
	creds, ok := s.Setup.Creds[id]
	if !ok {
		return nil, fmt.Errorf("stack: %q is not a built-in identity", id)
	}

	stateDir := filepath.Join(s.cfg.Dir, "state")
	if err := os.MkdirAll(stateDir, 0o700); err != nil {
		return nil, fmt.Errorf("stack: creating %s: %w", stateDir, err)
	}

	return party.Open(ctx, party.Config{
		URL: s.URL(), Creds: creds, Authz: withAuthz, StaleAfter: s.cfg.StaleAfter,
		Log: s.cfg.Log, RegistryStateFile: filepath.Join(stateDir, id+".registry.state"),
	})
}

// Close shuts the server down. Parties opened on the stack must be closed
// first.
func (s *Stack) Close() {
	s.cancel()
	s.wg.Wait()
	s.Broker.Shutdown()
}

// WaitForInterest polls until some connection in the NodeX account
// subscribes to subject, or ctx ends. nodex dev uses it to know that a
// service registered its request handlers before reporting it started.
func (s *Stack) WaitForInterest(ctx context.Context, subject string) error {
	acc, err := s.Broker.Server().LookupAccount(broker.AccountNodeX)
	if err != nil {
		return fmt.Errorf("stack: looking up account %s: %w", broker.AccountNodeX, err)
	}
	t := time.NewTicker(5 * time.Millisecond)
	defer t.Stop()
	for !acc.SubscriptionInterest(subject) {
		select {
		case <-ctx.Done():
			return fmt.Errorf("stack: no subscriber on %s: %w", subject, ctx.Err())
		case <-t.C:
		}
	}

	return nil
}
