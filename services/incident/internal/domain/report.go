package domain

import (
	"fmt"
	"slices"
	"strings"
	"time"
)

// Report is an incident's written account: summary, timeline, evidence,
// actions taken and open follow-ups. Its JSON form is the reply of
// nodex.v1.incident.report; Markdown renders the same content for people.
type Report struct {
	Generated   time.Time     `json:"generated"`
	Summary     Summary       `json:"summary"`
	Timeline    []ReportRow   `json:"timeline"`
	Evidence    []string      `json:"evidence"`
	Events      []TimelineRow `json:"events,omitempty"`
	Actions     []Action      `json:"actions"`
	FollowUps   []FollowUp    `json:"open_follow_ups"`
	Transitions []Transition  `json:"transitions"`
}

// Summary is the head of a report and the row of nodex.v1.incident.list.
type Summary struct {
	ID           string    `json:"id"`
	Type         Type      `json:"type"`
	State        State     `json:"state"`
	Severity     Severity  `json:"severity"`
	Score        int       `json:"score"`
	ScoreFactors []string  `json:"score_factors,omitempty"`
	Identity     string    `json:"identity"`
	IdentityKind Kind      `json:"identity_kind"`
	Threats      int       `json:"threats"`
	Occurrences  int       `json:"occurrences"`
	OpenedAt     time.Time `json:"opened_at"`
	UpdatedAt    time.Time `json:"updated_at"`
	Assignee     string    `json:"assignee,omitempty"`
	Reopens      int       `json:"reopens"`
}

// ReportRow is one line of a report's timeline: a history entry or a
// gathered event, in time order.
type ReportRow struct {
	At     time.Time `json:"at"`
	Actor  string    `json:"actor"`
	Kind   string    `json:"kind"`
	Detail string    `json:"detail"`
}

// Summarize returns the incident's summary.
func (inc *Incident) Summarize() Summary {
	kind := inc.Identity.Kind
	if !inc.Identity.Known {
		kind = KindUnknown
	}

	return Summary{
		ID: inc.ID, Type: inc.Type, State: inc.State, Severity: inc.Severity, Score: inc.Score,
		ScoreFactors: inc.ScoreFactors, Identity: inc.Identity.ID, IdentityKind: kind,
		Threats: len(inc.Threats), Occurrences: inc.ThreatCount(), OpenedAt: inc.OpenedAt,
		UpdatedAt: inc.UpdatedAt, Assignee: inc.Assignee, Reopens: inc.Reopens,
	}
}

// BuildReport assembles the report of inc at time now.
func (inc *Incident) BuildReport(now time.Time) Report {
	rows := make([]ReportRow, 0, len(inc.History)+len(inc.Timeline))
	for _, e := range inc.History {
		detail := e.Detail
		if e.Failed {
			detail = "FAILED " + detail
		}
		rows = append(rows, ReportRow{At: e.At, Actor: e.Actor, Kind: e.Kind, Detail: detail})
	}
	for _, ev := range inc.Timeline {
		rows = append(rows, ReportRow{At: ev.Time, Actor: ev.Subject, Kind: "event " + ev.Type,
			Detail: eventDetail(ev)})
	}
	slices.SortStableFunc(rows, func(a, b ReportRow) int { return a.At.Compare(b.At) })
	var open []FollowUp
	for _, f := range inc.FollowUps {
		if !f.Done {
			open = append(open, f)
		}
	}

	return Report{
		Generated: now.UTC(), Summary: inc.Summarize(), Timeline: rows,
		Evidence: slices.Clone(inc.Evidence), Events: slices.Clone(inc.Timeline),
		Actions: slices.Clone(inc.Actions), FollowUps: open,
		Transitions: slices.Clone(inc.Transitions),
	}
}

func eventDetail(ev TimelineRow) string {
	parts := []string{ev.Source, ev.Action, ev.Resource, ev.Status, ev.Severity}
	parts = slices.DeleteFunc(parts, func(s string) bool { return s == "" })
	detail := strings.Join(parts, " ") + " (" + ev.EventID + ")"
	if ev.Evidence {
		detail += " [evidence]"
	}

	return detail
}

// Markdown renders the report for people. Every value from threats and
// events is escaped, because an attacker chooses some of them.
func (r *Report) Markdown() string {
	var b strings.Builder
	s := r.Summary
	fmt.Fprintf(&b, "# Incident %s\n\n", md(s.ID))
	fmt.Fprintf(&b, "| field | value |\n| --- | --- |\n")
	for _, kv := range [][2]string{
		{"type", string(s.Type)}, {"state", string(s.State)},
		{"severity", fmt.Sprintf("%s (score %d)", s.Severity, s.Score)},
		{"identity", fmt.Sprintf("%s (%s)", s.Identity, s.IdentityKind)},
		{"threats", fmt.Sprintf("%d threats, %d occurrences", s.Threats, s.Occurrences)},
		{"opened", s.OpenedAt.Format(time.RFC3339)}, {"updated", s.UpdatedAt.Format(time.RFC3339)},
		{"assignee", s.Assignee}, {"reopened", fmt.Sprint(s.Reopens)},
		{"generated", r.Generated.Format(time.RFC3339)},
	} {
		fmt.Fprintf(&b, "| %s | %s |\n", kv[0], md(kv[1]))
	}
	if len(s.ScoreFactors) > 0 {
		b.WriteString("\nScore: " + md(strings.Join(s.ScoreFactors, "; ")) + "\n")
	}
	b.WriteString("\n## Timeline\n\n| time | actor | kind | detail |\n| --- | --- | --- | --- |\n")
	for _, row := range r.Timeline {
		fmt.Fprintf(&b, "| %s | %s | %s | %s |\n", row.At.Format(time.RFC3339Nano), md(row.Actor),
			md(row.Kind), md(row.Detail))
	}
	b.WriteString("\n## Evidence\n\n")
	for _, id := range r.Evidence {
		fmt.Fprintf(&b, "- `%s`\n", strings.ReplaceAll(id, "`", "'"))
	}
	b.WriteString("\n## Actions taken\n\n| id | action | target | status | result | lift |\n" +
		"| --- | --- | --- | --- | --- | --- |\n")
	for _, a := range r.Actions {
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %s |\n", a.ID, a.Kind, md(a.Target),
			a.Status, md(actionOutcome(a)), md(liftText(a.Lift)))
	}
	b.WriteString("\n## Open follow-ups\n\n")
	if len(r.FollowUps) == 0 {
		b.WriteString("None.\n")
	}
	for _, f := range r.FollowUps {
		fmt.Fprintf(&b, "- [ ] %s: %s\n", f.ID, md(f.Text))
	}

	return b.String()
}

func actionOutcome(a Action) string {
	switch {
	case a.Error != "":
		return "error: " + a.Error
	case a.ApprovalReason != "" && a.Status == StatusAwaitingApprove:
		return "awaiting approval: " + a.ApprovalReason
	case !a.ExpiresAt.IsZero():
		return a.Result + ", expires " + a.ExpiresAt.Format(time.RFC3339)
	default:
		return a.Result
	}
}

func liftText(l *Lift) string {
	if l == nil {
		return ""
	}
	text := fmt.Sprintf("%s by %s: %s", l.At.Format(time.RFC3339), l.Actor, l.Reason)
	if l.Error != "" {
		text += " (failed: " + l.Error + ")"
	}

	return text
}

// md escapes text for a Markdown table cell: pipes, backslashes, markup
// characters and line breaks, so a value cannot add rows, links or HTML.
func md(s string) string {
	var b strings.Builder
	for _, r := range s {
		switch {
		case r == '\n' || r == '\r':
			b.WriteByte(' ')
		case r < 0x20 || r == 0x7f:
			continue
		case strings.ContainsRune("\\`*_{}[]()<>#+!|~", r):
			b.WriteByte('\\')
			b.WriteRune(r)
		default:
			b.WriteRune(r)
		}
	}

	return b.String()
}
