package cli

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/nodexsec/nodex/libs/identity"
	"github.com/nodexsec/nodex/services/incident/incident"
)

// Incident service subjects and the role that serves them.
const (
	subjectIncidentList   = "nodex.v1.incident.list"
	subjectIncidentGet    = "nodex.v1.incident.get"
	subjectIncidentUpdate = "nodex.v1.incident.update"
	subjectIncidentReport = "nodex.v1.incident.report"
	roleIncident          = "service:incident"
)

// incidentListRequest is the body of nodex.v1.incident.list.
type incidentListRequest struct {
	State    string `json:"state,omitempty"`
	Type     string `json:"type,omitempty"`
	Identity string `json:"identity,omitempty"`
	Open     bool   `json:"open,omitempty"`
}

// incidentSummary is one incident of a list reply.
type incidentSummary struct {
	ID           string    `json:"id"`
	Type         string    `json:"type"`
	State        string    `json:"state"`
	Severity     string    `json:"severity"`
	Score        int       `json:"score"`
	ScoreFactors []string  `json:"score_factors,omitempty"`
	Identity     string    `json:"identity"`
	IdentityKind string    `json:"identity_kind"`
	Threats      int       `json:"threats"`
	Occurrences  int       `json:"occurrences"`
	OpenedAt     time.Time `json:"opened_at"`
	UpdatedAt    time.Time `json:"updated_at"`
	Assignee     string    `json:"assignee,omitempty"`
	Reopens      int       `json:"reopens"`
}

type incidentListReply struct {
	Incidents []incidentSummary `json:"incidents"`
}

// incidentGetRequest is the body of nodex.v1.incident.get and .report.
type incidentGetRequest struct {
	ID string `json:"id"`
}

// incidentUpdateRequest is the body of nodex.v1.incident.update.
type incidentUpdateRequest struct {
	ID       string `json:"id"`
	Verb     string `json:"verb"`
	Reason   string `json:"reason"`
	ActionID string `json:"action_id,omitempty"`
}

// incidentGetReply keeps the incident as raw JSON for --json and decodes
// the fields that the text view prints.
type incidentGetReply struct {
	Incident  json.RawMessage `json:"incident"`
	Revisions json.RawMessage `json:"revisions,omitempty"`
}

// incidentDetail is the part of a full incident that `incidents show`
// prints. Unlike a list entry, it carries the identity as an object and
// the threats as a list.
type incidentDetail struct {
	ID           string   `json:"id"`
	Type         string   `json:"type"`
	State        string   `json:"state"`
	Severity     string   `json:"severity"`
	Score        int      `json:"score"`
	ScoreFactors []string `json:"score_factors"`
	Identity     struct {
		ID     string `json:"id"`
		Kind   string `json:"kind"`
		Status string `json:"status"`
	} `json:"identity"`
	Threats   []json.RawMessage `json:"threats"`
	Evidence  []json.RawMessage `json:"evidence"`
	OpenedAt  time.Time         `json:"opened_at"`
	UpdatedAt time.Time         `json:"updated_at"`
	Reopens   int               `json:"reopens"`
	Offense   int               `json:"offense"`
	Actions   []struct {
		ID     string `json:"id"`
		Kind   string `json:"kind"`
		Target string `json:"target"`
		Status string `json:"status"`
		Mode   string `json:"mode"`
	} `json:"actions"`
	Transitions []struct {
		From   string    `json:"from"`
		To     string    `json:"to"`
		At     time.Time `json:"at"`
		Actor  string    `json:"actor"`
		Reason string    `json:"reason"`
	} `json:"transitions"`
}

type incidentReportReply struct {
	Markdown string          `json:"markdown"`
	Report   json.RawMessage `json:"report"`
}

// incidentVerbs are the update verbs offered as subcommands, with their help.
var incidentVerbs = []struct{ verb, short string }{
	{"assess", "Assess an open incident"},
	{"ack", "Acknowledge a contained incident and start investigating it"},
	{"contain", "Run the planned containment actions of an assessed incident"},
	{"approve", "Approve containment actions that await approval (--action: one of them)"},
	{"remediate", "Mark an investigated incident as remediated"},
	{"close", "Close a remediated incident"},
	{"reopen", "Reopen a closed incident"},
	{"lift", "Undo one containment action (--action required)"},
	{"note", "Add a note to an incident's history"},
}

func newIncidentsCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "incidents",
		Short: "List, inspect and move incidents through their lifecycle",
		Long: `incidents talks to the incident service as the operator. An incident moves
open -> assessed -> contained -> investigating -> remediated -> closed; each
verb names the state it needs, and every change records --reason and the actor.`,
	}
	cmd.AddCommand(newIncidentsListCmd(g), newIncidentsShowCmd(g), newIncidentsReportCmd(g))
	for _, v := range incidentVerbs {
		cmd.AddCommand(newIncidentsUpdateCmd(g, v.verb, v.short))
	}

	return cmd
}

// incidentStates lists the lifecycle states in their order, for checks.
var incidentStates = []string{
	string(incident.StateOpen), string(incident.StateAssessed), string(incident.StateContained),
	string(incident.StateInvestigating), string(incident.StateRemediated),
	string(incident.StateClosed),
}

func newIncidentsListCmd(g *globals) *cobra.Command {
	var req incidentListRequest
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List incidents, most recently updated first",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			// The incident service matches the filters exactly, so a
			// misspelt value would list nothing instead of failing.
			if req.State != "" && !slices.Contains(incidentStates, req.State) {
				return usageError{fmt.Errorf("invalid --state %q: use one of %v", req.State,
					incidentStates)}
			}
			if req.Type != "" && !isThreatType(req.Type) {
				return usageError{fmt.Errorf("invalid --type %q: use one of %v", req.Type,
					threatTypes)}
			}
			var reply incidentListReply
			err := g.request(cmd.Context(), identity.OperatorID, subjectIncidentList, roleIncident,
				req, &reply)
			if err != nil {
				return err
			}

			return g.output(reply, func(w io.Writer) error {
				return printIncidents(w, reply.Incidents)
			})
		},
	}
	f := cmd.Flags()
	f.StringVar(&req.State, "state", "", "only incidents in this state: open, assessed, contained, investigating, remediated or closed")
	f.StringVar(&req.Type, "type", "", "only incidents of this type: UNAUTHORIZED_ACCESS, SYSTEM_COMPROMISE, CODE_INJECTION, DATA_BREACH or API_ABUSE")
	f.StringVar(&req.Identity, "identity", "", "only incidents about this identity id")
	f.BoolVar(&req.Open, "open", false, "only incidents that are not closed")

	return cmd
}

func printIncidents(w io.Writer, list []incidentSummary) error {
	if len(list) == 0 {
		_, err := fmt.Fprintln(w, "no incidents")
		return err
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tTYPE\tSTATE\tSEVERITY\tSCORE\tIDENTITY\tUPDATED")
	for _, in := range list {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%s\t%s\n", in.ID, in.Type, in.State, in.Severity,
			in.Score, in.Identity, formatTime(in.UpdatedAt))
	}

	return tw.Flush()
}

func newIncidentsShowCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "show ID",
		Short: "Show an incident: summary, containment actions and transitions",
		Args:  exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var reply incidentGetReply
			err := g.request(cmd.Context(), identity.OperatorID, subjectIncidentGet, roleIncident,
				incidentGetRequest{ID: args[0]}, &reply)
			if err != nil {
				return err
			}
			if g.json {
				return printJSON(g.stdio.Out, reply)
			}

			return printIncident(g.stdio.Out, reply.Incident)
		},
	}
}

func printIncident(w io.Writer, raw json.RawMessage) error {
	var in incidentDetail
	if err := json.Unmarshal(raw, &in); err != nil {
		return fmt.Errorf("decoding incident: %w", err)
	}
	fmt.Fprintf(w, "%s  %s  %s  severity %s  score %d\n", in.ID, in.Type, in.State,
		in.Severity, in.Score)
	fmt.Fprintf(w, "identity: %s (%s, %s), incident %d of this identity\n", in.Identity.ID,
		in.Identity.Kind, in.Identity.Status, in.Offense)
	fmt.Fprintf(w, "opened %s, updated %s, %s, %s, %s\n",
		formatTime(in.OpenedAt), formatTime(in.UpdatedAt),
		plural(len(in.Threats), "threat", "threats"),
		plural(len(in.Evidence), "evidence event", "evidence events"),
		plural(in.Reopens, "reopen", "reopens"))
	if len(in.ScoreFactors) > 0 {
		fmt.Fprintf(w, "score factors: %s\n", strings.Join(in.ScoreFactors, ", "))
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	if len(in.Actions) > 0 {
		fmt.Fprintln(tw, "\nACTION\tKIND\tTARGET\tSTATUS\tMODE")
		for _, a := range in.Actions {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", a.ID, a.Kind, a.Target, a.Status, a.Mode)
		}
	}
	if len(in.Transitions) > 0 {
		fmt.Fprintln(tw, "\nAT\tFROM\tTO\tACTOR\tREASON")
		for _, t := range in.Transitions {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", formatTime(t.At), t.From, t.To, t.Actor, t.Reason)
		}
	}

	return tw.Flush()
}

func newIncidentsReportCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "report ID",
		Short: "Print an incident report as Markdown (with --json, as data and Markdown)",
		Args:  exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var reply incidentReportReply
			err := g.request(cmd.Context(), identity.OperatorID, subjectIncidentReport, roleIncident,
				incidentGetRequest{ID: args[0]}, &reply)
			if err != nil {
				return err
			}

			return g.output(reply, func(w io.Writer) error {
				_, err := io.WriteString(w, reply.Markdown)
				return err
			})
		},
	}
}

func newIncidentsUpdateCmd(g *globals, verb, short string) *cobra.Command {
	var reason, action string
	cmd := &cobra.Command{
		Use:   verb + " ID --reason TEXT",
		Short: short,
		Args:  exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if strings.TrimSpace(reason) == "" {
				return usageError{errors.New("missing --reason: say why, it is recorded with your identity")}
			}
			if verb == "lift" && action == "" {
				return usageError{errors.New("missing --action: name the action to lift (see incidents show)")}
			}
			req := incidentUpdateRequest{ID: args[0], Verb: verb, Reason: reason, ActionID: action}
			var reply incidentGetReply
			err := g.request(cmd.Context(), identity.OperatorID, subjectIncidentUpdate, roleIncident,
				req, &reply)
			if err != nil {
				return err
			}
			if g.json {
				return printJSON(g.stdio.Out, reply)
			}

			return printIncident(g.stdio.Out, reply.Incident)
		},
	}
	cmd.Flags().StringVar(&reason, "reason", "", "why you make this change (required; stored in the incident history)")
	if verb == "approve" || verb == "lift" {
		cmd.Flags().StringVar(&action, "action", "", "id of the containment action, from incidents show")
	}

	return cmd
}
