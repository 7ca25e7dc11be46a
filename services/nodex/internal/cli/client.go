package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/spf13/cobra"

	"github.com/nodexsec/nodex/libs/identity"
	"github.com/nodexsec/nodex/libs/party"
)

// requestTimeout bounds each request of a client command, except `run`.
const requestTimeout = 30 * time.Second

// openParty connects as the command's identity: the --creds file, or the
// dev credentials of defaultID.
func (g *globals) openParty(ctx context.Context, defaultID string, opts ...nats.Option,
) (*party.Party, error) {
	url, err := g.serverURL()
	if err != nil {
		return nil, err
	}
	creds, err := g.loadCreds(defaultID)
	if err != nil {
		return nil, fmt.Errorf("loading credentials %s: %w", g.credsPath(defaultID), err)
	}
	p, err := party.Open(ctx, party.Config{URL: url, Creds: creds, NATSOptions: opts})
	if errors.Is(err, nats.ErrAuthorization) {
		return nil, credentialsRejected{url: url, id: creds.ID}
	}
	if err != nil {
		// party.Open's connection errors already name the URL and the
		// identity.
		return nil, err
	}
	if err := awaitFresh(ctx, p.View); err != nil {
		_ = p.Close(context.WithoutCancel(ctx))
		return nil, fmt.Errorf("connecting to %s as %q: %w", url, creds.ID, err)
	}

	return p, nil
}

// credentialsRejected reports a connection that the broker rejected. The
// server sends the client only "Authorization Violation" and the broker
// logs the reason, so the message lists the likely causes and where to look.
type credentialsRejected struct{ url, id string }

func (e credentialsRejected) Error() string {
	return fmt.Sprintf("the broker at %s rejected the credentials of %q: the identity may be "+
		"suspended or revoked, or its credentials file out of date; the operator can check "+
		"its status with nodex agent list", e.url, e.id)
}

// Unwrap makes errors.Is(err, nats.ErrAuthorization) hold, which selects
// the exit code.
func (e credentialsRejected) Unwrap() error { return nats.ErrAuthorization }

// failOnPermission returns a connection option that ends ctx, through
// cancel, with the first permission violation the server reports. A denied
// JetStream request gets no reply, so without it the command would wait for
// its whole timeout and then report only the timeout.
func failOnPermission(cancel context.CancelCauseFunc) nats.Option {
	return nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
		if errors.Is(err, nats.ErrPermissionViolation) {
			cancel(err)
		}
	})
}

// permissionError returns the permission violation that ended ctx, with
// the fix for a command that needs the operator's credentials, or nil.
func (g *globals) permissionError(ctx context.Context, p *party.Party, what string) error {
	cause := context.Cause(ctx)
	if !errors.Is(cause, nats.ErrPermissionViolation) {
		return nil
	}

	return fmt.Errorf("%s as %q: %w; this needs the operator's credentials: pass --creds %s "+
		"or set NODEX_CREDS to the operator's credentials file", what, p.Creds.ID, cause,
		filepath.Join(g.homeDir(), "identities", "creds", identity.OperatorID+".creds"))
}

// freshTimeout bounds the wait for a fresh registry view: a few heartbeat
// intervals (2 s by default).
const freshTimeout = 10 * time.Second

// awaitFresh waits until view has seen a heartbeat that matches its state.
// A view opened just after a registry change holds a heartbeat signed
// before the change, which does not count as fresh, and every request
// would fail until the next heartbeat arrives.
func awaitFresh(ctx context.Context, view *identity.View) error {
	ctx, cancel := context.WithTimeout(ctx, freshTimeout)
	defer cancel()
	for {
		err := view.Fresh()
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for a fresh registry view: %w", err)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// request connects as defaultID, sends one sealed request and closes.
func (g *globals) request(ctx context.Context, defaultID, subject, role string,
	req, resp any,
) error {
	ctx, cancel := context.WithTimeout(ctx, requestTimeout)
	defer cancel()
	p, err := g.openParty(ctx, defaultID)
	if err != nil {
		return err
	}
	defer p.Close(context.WithoutCancel(ctx))

	return p.Bus.Request(ctx, subject, role, req, resp)
}

// printJSON writes v as indented JSON.
func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")

	return enc.Encode(v)
}

// output prints v as JSON with --json, else calls text.
func (g *globals) output(v any, text func(w io.Writer) error) error {
	if g.json {
		return printJSON(g.stdio.Out, v)
	}

	return text(g.stdio.Out)
}

// formatTime formats t in UTC to the second, or "-" when zero.
func formatTime(t time.Time) string {
	if t.IsZero() {
		return "-"
	}

	return t.UTC().Format(time.RFC3339)
}

// joinOr joins items with ", ", or returns "-" when there are none.
func joinOr(items []string) string {
	if len(items) == 0 {
		return "-"
	}

	return strings.Join(items, ", ")
}

// exactArgs is cobra.ExactArgs with a usage error, so a wrong argument
// count exits with ExitUsage. The message names the command without the
// "nodex" that Main prints before every error.
func exactArgs(n int) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) != n {
			return usageError{fmt.Errorf("%s takes %s, got %d; usage: %s", commandName(cmd),
				plural(n, "argument", "arguments"), len(args), cmd.UseLine())}
		}

		return nil
	}
}

// noArgs is cobra.NoArgs with a usage error.
func noArgs(cmd *cobra.Command, args []string) error {
	if len(args) > 0 {
		return usageError{fmt.Errorf("%s takes no arguments, got %q", commandName(cmd), args)}
	}

	return nil
}

// commandName returns cmd's path below the root, such as "receipts verify".
func commandName(cmd *cobra.Command) string {
	return strings.TrimPrefix(cmd.CommandPath(), cmd.Root().Name()+" ")
}

// writeJSONLine writes v as one line of JSON.
func writeJSONLine(w io.Writer, v any) error {
	return json.NewEncoder(w).Encode(v)
}

// plural returns n with the singular or the plural noun, as in "1 finding"
// and "2 findings".
func plural(n int, one, many string) string {
	if n == 1 {
		return "1 " + one
	}

	return fmt.Sprintf("%d %s", n, many)
}
