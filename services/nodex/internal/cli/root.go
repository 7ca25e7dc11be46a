// Package cli implements the nodex command tree, one file per command.
package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/nats-io/nats.go"
	"github.com/spf13/cobra"
	"go.opentelemetry.io/otel"

	"github.com/nodexsec/nodex/libs/conf"
	"github.com/nodexsec/nodex/libs/errs"
	"github.com/nodexsec/nodex/libs/telemetry"
)

// Exit codes every nodex command uses; `nodex run` adds the program's own
// status (see run.go). Scripts may rely on them.
const (
	ExitOK       = 0 // the command did what it was asked
	ExitError    = 1 // NodeX or the connection failed, or the request conflicts with the current state
	ExitUsage    = 2 // the command line is wrong
	ExitDenied   = 3 // policy, validation or the broker's authentication refused the request
	ExitNotFound = 4 // the named item does not exist
)

// Stdio holds the streams a command reads and writes.
type Stdio struct {
	In  io.Reader
	Out io.Writer
	Err io.Writer
}

// globals are the settings every client command shares.
type globals struct {
	stdio  Stdio
	getenv conf.Getenv
	server string
	creds  string
	home   string
	json   bool
}

// usageError marks an error in the command line, which exits with ExitUsage.
type usageError struct{ error }

// Main runs the nodex command line args and returns the process exit code.
func Main(ctx context.Context, args []string, stdio Stdio, getenv conf.Getenv) int {
	g := &globals{stdio: stdio, getenv: getenv}
	// Client commands join the trace of what they ask for: spans go to the
	// exporter the OTEL_* variables select (none by default) and
	// traceparent travels with every request.
	if tel, err := telemetry.Setup(ctx, telemetry.Config{ServiceName: "nodex", Getenv: getenv}); err == nil {
		otel.SetTracerProvider(tel.TracerProvider())
		defer func() { _ = tel.Shutdown(context.WithoutCancel(ctx)) }()
	} else {
		fmt.Fprintln(stdio.Err, "nodex: tracing disabled:", err)
	}
	root := newRoot(g)
	root.SetArgs(args)
	root.SetIn(stdio.In)
	root.SetOut(stdio.Out)
	root.SetErr(stdio.Err)

	err := root.ExecuteContext(ctx)
	if err == nil {
		return ExitOK
	}
	var code exitCode
	if errors.As(err, &code) {
		return int(code)
	}
	fmt.Fprintln(stdio.Err, "nodex:", err)

	return exitFor(err)
}

// exitCode is returned by commands that finished but must exit non-zero
// without another message, such as `nodex run` passing on a program's status.
type exitCode int

func (c exitCode) Error() string { return fmt.Sprintf("exit status %d", int(c)) }

func exitFor(err error) int {
	var ue usageError
	if errors.As(err, &ue) {
		return ExitUsage
	}
	if errors.Is(err, nats.ErrPermissionViolation) || errors.Is(err, nats.ErrAuthorization) {
		return ExitDenied
	}
	var ce *errs.Error
	if errors.As(err, &ce) {
		switch ce.Class {
		case "denied", "invalid":
			return ExitDenied
		case "not_found":
			return ExitNotFound
		}
	}

	return ExitError
}

func newRoot(g *globals) *cobra.Command {
	root := &cobra.Command{
		Use:   "nodex",
		Short: "NodeX: the security plane for multi-agent AI systems",
		Long: `nodex runs NodeX on one machine (nodex dev) and is the agent's and the
operator's client of a running deployment.

Connection settings come from --server and --creds, then the environment
(NATS_URL, NODEX_CREDS, NODEX_HOME), then the development defaults in ./.nodex/.

Exit codes: 0 success, 1 NodeX or connection error, 2 bad command line,
3 refused by policy or validation, or credentials the broker rejected, 4 not
found. nodex run also passes on the program's own exit status; see nodex run
--help.`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError{err} })
	pf := root.PersistentFlags()
	pf.StringVar(&g.server, "server", "", "NATS server URL (env NATS_URL; default from the dev state in NODEX_HOME)")
	pf.StringVar(&g.creds, "creds", "", "credentials file (env NODEX_CREDS; default: the command's dev identity in NODEX_HOME)")
	pf.StringVar(&g.home, "home", "", "NodeX state folder (env NODEX_HOME; default ./.nodex)")
	pf.BoolVar(&g.json, "json", false, "print machine-readable JSON instead of text")

	root.AddCommand(newVersionCmd(g))
	addCommands(root, g)
	rejectUnknownSubcommands(root)

	return root
}

// rejectUnknownSubcommands makes every command that only groups
// subcommands, the root included, fail with a usage error when its first
// argument names no subcommand. Without a run function cobra prints the
// group's help and exits 0 for `nodex keys bogus`, and the root's own
// check returns an error that is not marked as a usage error.
func rejectUnknownSubcommands(cmd *cobra.Command) {
	for _, sub := range cmd.Commands() {
		rejectUnknownSubcommands(sub)
	}
	if !cmd.HasSubCommands() || cmd.Runnable() {
		return
	}
	cmd.Args = cobra.ArbitraryArgs
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		if len(args) == 0 {
			return cmd.Help()
		}

		return unknownCommand(cmd, args[0])
	}
}

// unknownCommand returns the usage error for name under cmd, with cobra's
// suggestions of similar command names.
func unknownCommand(cmd *cobra.Command, name string) error {
	var b strings.Builder
	fmt.Fprintf(&b, "unknown command %q for %q", name, cmd.CommandPath())
	if cmd.SuggestionsMinimumDistance <= 0 {
		// cobra's own default, which it sets only on its internal path.
		cmd.SuggestionsMinimumDistance = 2
	}
	if suggestions := cmd.SuggestionsFor(name); len(suggestions) > 0 {
		b.WriteString("\n\nDid you mean this?\n")
		for _, s := range suggestions {
			fmt.Fprintf(&b, "\t%s\n", s)
		}
	}
	fmt.Fprintf(&b, "\nRun '%s --help' for usage.", cmd.CommandPath())

	return usageError{errors.New(b.String())}
}
