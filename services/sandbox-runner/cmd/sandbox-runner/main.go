// Command sandbox-runner runs the NodeX sandbox-runner service on its own: it
// connects to NATS as the sandbox identity and runs sealed bundles in
// sandboxes. `nodex dev` runs the same service in process. sandbox-init must
// be built beside it (or named with -init).
package main

import (
	"context"
	"flag"
	"log/slog"

	"github.com/nodexsec/nodex/libs/identity"
	"github.com/nodexsec/nodex/libs/party"
	"github.com/nodexsec/nodex/services/sandbox-runner/sandbox"
)

func main() {
	var cfg sandbox.Config
	party.Main(party.Binary{
		Name: "sandbox-runner", Service: "sandbox", EnvPrefix: "NODEX_SANDBOX", Authz: true,
		RegisterFlags: func(fs *flag.FlagSet) { cfg.RegisterFlags(fs) },
		Config:        func() any { return cfg },
		Validate:      func() error { return cfg.WithDefaults().Validate() },
		Replicas:      func() int { return cfg.Replicas },
		Run: func(ctx context.Context, p *party.Party, log *slog.Logger) error {
			return sandbox.Run(ctx, sandbox.Deps{
				Config: cfg, Client: p.Bus, Directory: &identity.Directory{View: p.View},
				Creds: p.Creds, Registry: p.View, Decider: p.Authz, Events: p.Events, Log: log,
			})
		},
	})
}
