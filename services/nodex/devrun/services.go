package devrun

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/nodexsec/nodex/libs/broker"
	"github.com/nodexsec/nodex/libs/identity"
	"github.com/nodexsec/nodex/libs/party"
	"github.com/nodexsec/nodex/services/codesec/codesec"
	"github.com/nodexsec/nodex/services/incident/incident"
	"github.com/nodexsec/nodex/services/keyvault/keyvault"
	"github.com/nodexsec/nodex/services/monitor/monitor"
	"github.com/nodexsec/nodex/services/policy/policy"
	"github.com/nodexsec/nodex/services/sandbox-runner/sandbox"
)

// services lists the services in start order: policy first, since the
// others decide with the policy set it seeds, and codesec before the
// sandbox-runner, which reads codesec's bundle store.
func services() []service {
	return []service{
		{name: "policy", id: "policy", run: runPolicy},
		{name: "monitor", id: "monitor", run: runMonitor},
		{name: "keyvault", id: "keyvault", authz: true, run: runKeyvault},
		{name: "codesec", id: "codesec", authz: true, run: runCodesec},
		{name: "sandbox-runner", id: "sandbox", authz: true, run: runSandbox},
		{name: "incident", id: "incident", authz: true, run: runIncident},
	}
}

func runPolicy(ctx context.Context, e *env, p *party.Party, ready func()) error {
	return policy.Run(ctx, policy.Deps{
		Client: p.Bus, Events: p.Events, Log: e.serviceLog("policy"), Ready: ready,
		Signer:    &identity.Keyring{Creds: p.Creds, View: p.View},
		Directory: &identity.Directory{View: p.View},
	})
}

func runMonitor(ctx context.Context, e *env, p *party.Party, ready func()) error {
	// The broker has no identity of its own, so the monitor, which counts
	// events, publishes the broker's denials.
	e.stack.Broker.OnDenial(func(d broker.Denial) {
		if ctx.Err() == nil {
			p.Events.Publish(ctx, d.Event())
		}
	})
	cfg := monitor.Config{MetricsAddr: e.cfg.MetricsAddr}
	deps := monitor.Deps{Log: e.serviceLog("monitor"), Bus: p.Bus, Ready: func(string) { ready() }}
	if e.cfg.MetricsAddr == "" {
		// No endpoint: the monitor records into the process's meter
		// provider instead of serving its default address.
		deps.MeterProvider = e.tel.MeterProvider()
	}

	return monitor.Run(ctx, cfg, deps)
}

func runKeyvault(ctx context.Context, e *env, p *party.Party, ready func()) error {
	kekPath := filepath.Join(e.cfg.Home, "keyvault.kek")
	if err := ensureKEK(kekPath); err != nil {
		return err
	}
	cfg := keyvault.Config{KEKFile: kekPath}
	go e.readyOn(ctx, "nodex.v1.keyvault.list", ready)

	return keyvault.Run(ctx, keyvault.Deps{
		Config: cfg, Client: p.Bus, Decider: p.Authz, Audit: p.Events,
		Log: e.serviceLog("keyvault"),
	})
}

func runIncident(ctx context.Context, e *env, p *party.Party, ready func()) error {
	// The incident service writes authority-signed downgrades on its own
	// connection, as it would in its own container. nodex dev also gives it
	// the root-key admin, which the development state holds anyway, so that
	// expiring containments lift themselves.
	kv, err := p.JS.KeyValue(ctx, identity.Bucket)
	if err != nil {
		return fmt.Errorf("opening registry bucket: %w", err)
	}
	go e.readyOn(ctx, "nodex.v1.incident.list", ready)

	return incident.Run(ctx, incident.Deps{
		Client: p.Bus, Audit: p.Events, Authorizer: p.Authz, Registry: p.View,
		Authority: identity.NewAuthorityWriter(kv, e.stack.Setup.Authority),
		Admin:     e.stack.Admin, Log: e.serviceLog("incident"),
	})
}

// ensureKEK creates the development key encryption key on first start. An
// existing file is kept: it wraps the stored keys.
func ensureKEK(path string) error {
	if _, err := os.Stat(path); err == nil {
		return nil
	} else if !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("checking key encryption key %s: %w", path, err)
	}

	return keyvault.GenerateKEKFile(path)
}

// readyOn calls ready once a service subscribes to subject, for services
// whose Run has no readiness hook.
func (e *env) readyOn(ctx context.Context, subject string, ready func()) {
	if err := e.stack.WaitForInterest(ctx, subject); err == nil {
		ready()
	}
}

func runSandbox(ctx context.Context, e *env, p *party.Party, ready func()) error {
	cfg := sandbox.Config{InitPath: e.cfg.SandboxInit, Insecure: e.cfg.InsecureNoSandbox}
	go e.readyOn(ctx, "nodex.v1.sandbox.exec", ready)

	return sandbox.Run(ctx, sandbox.Deps{
		Config: cfg, Client: p.Bus, Directory: &identity.Directory{View: p.View},
		Creds: p.Creds, Registry: p.View, Decider: p.Authz, Events: p.Events, Log: e.serviceLog("sandbox-runner"),
	})
}

func runCodesec(ctx context.Context, e *env, p *party.Party, ready func()) error {
	go e.readyOn(ctx, "nodex.v1.codesec.submit", ready)

	return codesec.Run(ctx, codesec.Deps{
		Client: p.Bus, Decider: p.Authz, Audit: p.Events, Creds: p.Creds, View: p.View,
		Log: e.serviceLog("codesec"),
	})
}
