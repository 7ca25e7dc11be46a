// Command sandbox-runner runs the NodeX sandbox-runner service on its own: it
// connects to NATS as the sandbox identity and runs sealed bundles in
// sandboxes. `nodex dev` runs the same service in process. sandbox-init must
// be built beside it (or named with -init).
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
	"github.com/nodexsec/nodex/libs/identity"
	"github.com/nodexsec/nodex/libs/party"
	"github.com/nodexsec/nodex/services/sandbox-runner/sandbox"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], conf.OSEnv(), os.Stdout, os.Stderr)
	stop()
	if errors.Is(err, flag.ErrHelp) {
		os.Exit(0)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "sandbox-runner:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, getenv conf.Getenv, stdout, stderr io.Writer) error {
	var cfg sandbox.Config
	var sf party.ServiceFlags
	fs := flag.NewFlagSet("sandbox-runner", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfg.RegisterFlags(fs)
	sf.Register(fs)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if err := conf.ApplyEnv(fs, "NODEX_SANDBOX", getenv); err != nil {
		return err
	}
	if err := sf.Resolve(getenv); err != nil {
		return err
	}
	log, err := sf.Logger(stderr, "sandbox")
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

	return sandbox.Run(ctx, sandbox.Deps{
		Config: cfg, Client: p.Bus, Directory: &identity.Directory{View: p.View}, Creds: p.Creds,
		Decider: p.Authz, Events: p.Events, Log: log,
	})
}
