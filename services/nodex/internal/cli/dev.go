package cli

import (
	"errors"
	"fmt"
	"path/filepath"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/nodexsec/nodex/libs/broker"
	"github.com/nodexsec/nodex/libs/identity"
	"github.com/nodexsec/nodex/libs/logx"
	"github.com/nodexsec/nodex/services/nodex/devrun"
)

func newDevCmd(g *globals) *cobra.Command {
	var (
		host, metrics, level, format string
		port                         int
		insecure                     bool
	)
	cmd := &cobra.Command{
		Use:   "dev",
		Short: "Run every NodeX service in one process on an embedded NATS server",
		Long: `dev starts an embedded NATS server with JetStream (every write synced to
disk) and all NodeX services in this process, each with its own identity.
State lives in NODEX_HOME (default ./.nodex): identities and credentials, the
key encryption key, and the JetStream store. Restarting keeps all of it.
On first start it creates the operator root key and credentials for the
services, a demo agent (agent-demo) and an operator (operator).

Stop it with Ctrl-C; services drain before the server shuts down.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			lvl, err := logx.ParseLevel(level)
			if err != nil {
				return usageError{err}
			}
			log, err := logx.New(g.stdio.Err, logx.Options{Format: format, Level: lvl})
			if err != nil {
				return usageError{err}
			}
			home := g.homeDir()

			err = devrun.Run(cmd.Context(), devrun.Config{
				Home: home, Host: host, Port: port, MetricsAddr: metrics,
				InsecureNoSandbox: insecure, Log: log, Getenv: g.getenv,
				Ready: func(url string) { printDevBanner(g, home, url) },
			})
			if errors.Is(err, broker.ErrListen) && errors.Is(err, syscall.EADDRINUSE) {
				return fmt.Errorf("%w; stop the process that uses it, or pass --port 0 to pick "+
					"a free port", err)
			}

			return err
		},
	}
	f := cmd.Flags()
	f.StringVar(&host, "host", "127.0.0.1", "address the embedded NATS server listens on")
	f.IntVar(&port, "port", 4222, "TCP port of the embedded NATS server (0 picks a free port)")
	f.StringVar(&metrics, "metrics-addr", "127.0.0.1:9464", "host:port of the monitor's Prometheus endpoint (empty disables it)")
	f.StringVar(&level, "log-level", "info", "minimum log level: debug, info, warn or error")
	f.StringVar(&format, "log-format", "text", "log format: text or json")
	f.BoolVar(&insecure, "insecure-no-sandbox", false, "run code WITHOUT the sandbox (development only; every run is logged as insecure)")

	return cmd
}

func printDevBanner(g *globals, home, url string) {
	out := g.stdio.Out
	fmt.Fprintf(out, "NodeX is running. NATS: %s\n", url)
	fmt.Fprintf(out, "  state:    %s\n", home)
	fmt.Fprintf(out, "  agent:    %s\n", filepath.Join(home, "identities", "creds", identity.DemoAgentID+".creds"))
	fmt.Fprintf(out, "  operator: %s\n", filepath.Join(home, "identities", "creds", identity.OperatorID+".creds"))
	fmt.Fprintln(out, "From another terminal in this folder: nodex run hello.py")
	fmt.Fprintln(out, "Stop with Ctrl-C.")
}
