// Command nodex is the NodeX operator's and agent's program: `nodex dev` runs
// the whole system on an embedded NATS server, and the other subcommands are
// clients of a running deployment. See `nodex --help`.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/nodexsec/nodex/services/nodex/internal/cli"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := cli.Main(ctx, os.Args[1:], cli.Stdio{In: os.Stdin, Out: os.Stdout, Err: os.Stderr},
		os.Getenv)
	stop()
	os.Exit(code)
}
