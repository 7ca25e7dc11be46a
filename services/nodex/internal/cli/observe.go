package cli

import (
	"context"
	"fmt"
	"io"
	"slices"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/nodexsec/nodex/libs/events"
	"github.com/nodexsec/nodex/libs/identity"
	"github.com/nodexsec/nodex/services/monitor/monitor"
)

// roleMonitor is the role that serves nodex.v1.monitor.threats.
const roleMonitor = "service:monitor"

// parseSince reads --since as a duration back from now (10m, 2h) or an
// RFC 3339 time. Empty means no bound.
func parseSince(s string, now time.Time) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	if d, err := time.ParseDuration(s); err == nil {
		if d < 0 {
			return time.Time{}, usageError{fmt.Errorf("invalid --since %q: use a positive duration", s)}
		}
		return now.Add(-d), nil
	}
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		return time.Time{}, usageError{fmt.Errorf(
			"invalid --since %q: use a duration such as 15m or a time such as 2026-01-02T15:04:05Z", s)}
	}

	return t, nil
}

func newThreatsCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "threats",
		Short: "Inspect the threats the monitor raised",
	}
	cmd.AddCommand(newThreatsListCmd(g))

	return cmd
}

type threatsReply struct {
	Threats []monitor.Threat `json:"threats"`
}

func newThreatsListCmd(g *globals) *cobra.Command {
	var filter monitor.ThreatFilter
	var since string
	cmd := &cobra.Command{
		Use:   "list [--type TYPE] [--identity ID] [--since DURATION|TIME] [--limit N]",
		Short: "List threats, most recently seen first (latest revision of each)",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if filter.Type != "" && !isThreatType(filter.Type) {
				return usageError{fmt.Errorf("invalid --type %q: use one of %v", filter.Type,
					threatTypes)}
			}
			t, err := parseSince(since, time.Now())
			if err != nil {
				return err
			}
			filter.Since = t
			var reply threatsReply
			err = g.request(cmd.Context(), identity.OperatorID, monitor.SubjectThreats, roleMonitor,
				filter, &reply)
			if err != nil {
				return err
			}

			return g.output(reply, func(w io.Writer) error { return printThreats(w, reply.Threats) })
		},
	}
	f := cmd.Flags()
	f.StringVar(&filter.Type, "type", "", "only threats of this type, e.g. UNAUTHORIZED_ACCESS")
	f.StringVar(&filter.Identity, "identity", "", "only threats about this identity id")
	f.StringVar(&since, "since", "", "only threats seen since this duration ago (15m) or RFC 3339 time")
	f.IntVar(&filter.Limit, "limit", 0, "maximum number of threats (0: the monitor's default of 100)")

	return cmd
}

func printThreats(w io.Writer, threats []monitor.Threat) error {
	if len(threats) == 0 {
		_, err := fmt.Fprintln(w, "no threats")
		return err
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tTYPE\tSEVERITY\tRULE\tIDENTITY\tCOUNT\tLAST SEEN")
	for _, t := range threats {
		id := t.Identity
		if id == "" {
			id = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\t%s\n", t.ID, t.Type, t.Severity, t.RuleID, id,
			t.Count, formatTime(t.LastSeen))
	}

	return tw.Flush()
}

func newEventsCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "events",
		Short: "Read the security event stream",
	}
	cmd.AddCommand(newEventsTailCmd(g))

	return cmd
}

func newEventsTailCmd(g *globals) *cobra.Command {
	var filter monitor.EventFilter
	var since string
	cmd := &cobra.Command{
		Use:   "tail [--type TYPE] [--identity ID] [--since DURATION|TIME] [--limit N]",
		Short: "Print the latest security events, oldest first",
		Long: `tail reads NODEX_EVENTS as the operator, who holds the audit role that
events are encrypted to, and prints the latest matching events. With --json it
prints one JSON object per line.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			t, err := parseSince(since, time.Now())
			if err != nil {
				return err
			}
			filter.Since = t
			evs, err := g.tailEvents(cmd.Context(), filter)
			if err != nil {
				return err
			}

			return printEvents(g, evs)
		},
	}
	f := cmd.Flags()
	f.StringVar(&filter.Type, "type", "", "only events of this type, e.g. authz.decision")
	f.StringVar(&filter.Identity, "identity", "", "only events whose subject or source is this identity id")
	f.StringVar(&since, "since", "", "only events since this duration ago (15m) or RFC 3339 time (default: all)")
	f.IntVar(&filter.Limit, "limit", 100, "maximum number of events, up to 10000")

	return cmd
}

// tailEvents reads matching events as the operator.
func (g *globals) tailEvents(ctx context.Context, f monitor.EventFilter) ([]monitor.Event, error) {
	ctx, cancel := context.WithTimeout(ctx, requestTimeout)
	defer cancel()
	ctx, deny := context.WithCancelCause(ctx)
	defer deny(nil)
	p, err := g.openParty(ctx, identity.OperatorID, failOnPermission(deny))
	if err != nil {
		return nil, err
	}
	defer p.Close(context.WithoutCancel(ctx))

	evs, err := monitor.Reader{JS: p.JS, Codec: p.Codec}.TailEvents(ctx, f)
	if perr := g.permissionError(ctx, p, "reading stream "+events.StreamName); perr != nil {
		return nil, perr
	}
	if err != nil {
		return nil, fmt.Errorf("reading events: %w", err)
	}

	return evs, nil
}

func printEvents(g *globals, evs []monitor.Event) error {
	w := g.stdio.Out
	if g.json {
		for _, ev := range evs {
			if err := writeJSONLine(w, ev); err != nil {
				return err
			}
		}
		return nil
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "TIME\tTYPE\tSTATUS\tSEVERITY\tSUBJECT\tRESOURCE")
	for _, ev := range evs {
		subject := ev.Subject
		if subject == "" {
			subject = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", formatTime(ev.Time), ev.Type, ev.Status,
			ev.Severity, subject, ev.Resource)
	}

	return tw.Flush()
}

// threatTypes lists the threat types, for help and checks.
var threatTypes = []string{
	"UNAUTHORIZED_ACCESS", "SYSTEM_COMPROMISE", "CODE_INJECTION", "DATA_BREACH", "API_ABUSE",
}

// isThreatType reports whether t is a threat type.
func isThreatType(t string) bool { return slices.Contains(threatTypes, t) }
