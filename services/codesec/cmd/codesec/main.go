// Command codesec runs the NodeX codesec service on its own: it connects to
// NATS as the codesec identity and serves nodex.v1.codesec.*. `nodex dev`
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
	"github.com/nodexsec/nodex/services/codesec/codesec"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], conf.OSEnv(), os.Stdout, os.Stderr)
	stop()
	if errors.Is(err, flag.ErrHelp) {
		os.Exit(0)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "codesec:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, getenv conf.Getenv, stdout, stderr io.Writer) error {
	var cfg codesec.Config
	var sf party.ServiceFlags
	fs := flag.NewFlagSet("codesec", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfg.RegisterFlags(fs)
	sf.Register(fs)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if err := conf.ApplyEnv(fs, "NODEX_CODESEC", getenv); err != nil {
		return err
	}
	if err := sf.Resolve(getenv); err != nil {
		return err
	}
	log, err := sf.Logger(stderr, "codesec")
	if err != nil {
		return err
	}
	log.Info("configuration loaded", "config", conf.Masked(cfg))
	if err := cfg.WithDefaults().Validate(); err != nil {
		return err
	}
	if sf.CheckConfig {
		fmt.Fprintln(stdout, "configuration valid")
		return nil
	}

	p, err := sf.Open(ctx, log, true)
	if err != nil {
		return err
	}
	defer p.Close(context.WithoutCancel(ctx))

	return codesec.Run(ctx, codesec.Deps{
		Config: cfg, Client: p.Bus, Decider: p.Authz, Audit: p.Events, Creds: p.Creds,
		View: p.View, Log: log,
	})
}
