// Command keyvault runs the NodeX keyvault service on its own: it connects
// to NATS as the keyvault identity and serves nodex.v1.keyvault.*. `nodex dev`
// runs the same service in process.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/nodexsec/nodex/libs/conf"
	"github.com/nodexsec/nodex/libs/party"
	"github.com/nodexsec/nodex/services/keyvault/keyvault"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], conf.OSEnv(), os.Stdout, os.Stderr)
	stop()
	if errors.Is(err, flag.ErrHelp) {
		os.Exit(0)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "keyvault:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, getenv conf.Getenv, stdout, stderr io.Writer) error {
	var cfg keyvault.Config
	var sf party.ServiceFlags
	fs := flag.NewFlagSet("keyvault", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfg.RegisterFlags(fs)
	sf.Register(fs)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if err := conf.ApplyEnv(fs, "NODEX_KEYVAULT", getenv); err != nil {
		return err
	}
	if err := sf.Resolve(getenv); err != nil {
		return err
	}
	log, err := sf.Logger(stderr, "keyvault")
	if err != nil {
		return err
	}
	log.Info("configuration loaded", "config", conf.Masked(cfg))
	if sf.CheckConfig {
		fmt.Fprintln(stdout, "configuration valid")
		return nil
	}

	p, err := sf.Open(ctx, log, true)
	if err != nil {
		return err
	}
	defer p.Close(context.WithoutCancel(ctx))

	return keyvault.Run(ctx, keyvault.Deps{
		Config: cfg, Client: p.Bus, Decider: p.Authz, Audit: p.Events, Log: log,
	})
}

