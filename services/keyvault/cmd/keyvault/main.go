// Command keyvault runs the NodeX keyvault service on its own: it connects
// to NATS as the keyvault identity and serves nodex.v1.keyvault.*. `nodex dev`
// runs the same service in process.
package main

import (
	"context"
	"flag"
	"log/slog"

	"github.com/nodexsec/nodex/libs/party"
	"github.com/nodexsec/nodex/services/keyvault/keyvault"
)

func main() {
	var cfg keyvault.Config
	party.Main(party.Binary{
		Name: "keyvault", EnvPrefix: "NODEX_KEYVAULT", Authz: true,
		RegisterFlags: func(fs *flag.FlagSet) { cfg.RegisterFlags(fs) },
		Config:        func() any { return cfg },
		Run: func(ctx context.Context, p *party.Party, log *slog.Logger) error {
			return keyvault.Run(ctx, keyvault.Deps{
				Config: cfg, Client: p.Bus, Decider: p.Authz, Audit: p.Events, Log: log,
			})
		},
	})
}
