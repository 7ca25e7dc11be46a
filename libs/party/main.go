package party

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/nodexsec/nodex/libs/conf"
)

// Binary describes a service binary for [Main]: its flags, its checks and
// how to run it on an opened party.
type Binary struct {
	// Name names the flag set and prefixes errors.
	Name string
	// Service is the value of the service log key; empty means Name.
	Service string
	// EnvPrefix is the prefix of the flags' environment twins, such as
	// NODEX_KEYVAULT.
	EnvPrefix string
	// Authz opens the embedded policy engine with the party.
	Authz bool
	// RegisterFlags adds the service's own flags.
	RegisterFlags func(*flag.FlagSet)
	// Config returns the parsed configuration, logged once with secrets
	// masked (see conf.Masked).
	Config func() any
	// Validate, if set, checks the configuration before connecting; it also
	// decides -check-config.
	Validate func() error
	// Replicas, if set, returns the service's replica setting after the
	// flags are parsed; it becomes [Config.Replicas].
	Replicas func() int
	// Run serves until ctx ends.
	Run func(ctx context.Context, p *Party, log *slog.Logger) error
}

// Main runs b as a process: it parses flags and their environment twins,
// connects, runs until SIGINT or SIGTERM, and exits 1 with the error
// prefixed by b.Name.
func Main(b Binary) {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := b.run(ctx, os.Args[1:], conf.OSEnv(), os.Stdout, os.Stderr)
	stop()
	if errors.Is(err, flag.ErrHelp) {
		os.Exit(0)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", b.Name, err)
		os.Exit(1)
	}
}

func (b Binary) run(ctx context.Context, args []string, getenv conf.Getenv,
	stdout, stderr io.Writer,
) error {
	var sf ServiceFlags
	fs := flag.NewFlagSet(b.Name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	b.RegisterFlags(fs)
	sf.Register(fs)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if err := conf.ApplyEnv(fs, b.EnvPrefix, getenv); err != nil {
		return err
	}
	if err := sf.Resolve(getenv); err != nil {
		return err
	}
	service := b.Service
	if service == "" {
		service = b.Name
	}
	log, err := sf.Logger(stderr, service)
	if err != nil {
		return err
	}
	log.Info("configuration loaded", "config", conf.Masked(b.Config()))
	if b.Validate != nil {
		if err := b.Validate(); err != nil {
			return err
		}
	}
	if sf.CheckConfig {
		fmt.Fprintln(stdout, "configuration valid")
		return nil
	}

	replicas := 0
	if b.Replicas != nil {
		replicas = b.Replicas()
	}
	p, err := sf.Open(ctx, log, b.Authz, replicas)
	if err != nil {
		return err
	}
	defer p.Close(context.WithoutCancel(ctx))

	return b.Run(ctx, p, log)
}
