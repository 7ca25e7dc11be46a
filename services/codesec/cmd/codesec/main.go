// Command codesec runs the NodeX codesec service on its own: it connects to
// NATS as the codesec identity and serves nodex.v1.codesec.*. `nodex dev`
// runs the same service in process.
package main

import (
	"context"
	"flag"
	"log/slog"

	"github.com/nodexsec/nodex/libs/party"
	"github.com/nodexsec/nodex/services/codesec/codesec"
)

func main() {
	var cfg codesec.Config
	party.Main(party.Binary{
		Name: "codesec", EnvPrefix: "NODEX_CODESEC", Authz: true,
		RegisterFlags: func(fs *flag.FlagSet) { cfg.RegisterFlags(fs) },
		Config:        func() any { return cfg },
		Validate:      func() error { return cfg.WithDefaults().Validate() },
		Replicas:      func() int { return cfg.Replicas },
		Run: func(ctx context.Context, p *party.Party, log *slog.Logger) error {
			return codesec.Run(ctx, codesec.Deps{
				Config: cfg, Client: p.Bus, Decider: p.Authz, Audit: p.Events, Creds: p.Creds,
				View: p.View, Log: log,
			})
		},
	})
}
