package domain

import (
	"slices"
	"strconv"
	"time"
)

// Incident is one attack as the operator handles it: the threats that make
// it up, the lifecycle, the containment actions and the gathered timeline.
type Incident struct {
	ID           string        `json:"id"`
	Type         Type          `json:"type"`
	State        State         `json:"state"`
	Severity     Severity      `json:"severity"`
	Score        int           `json:"score"`
	ScoreFactors []string      `json:"score_factors,omitempty"`
	Identity     IdentityInfo  `json:"identity"`
	Resources    []Resource    `json:"resources,omitempty"`
	Threats      []ThreatRef   `json:"threats"`
	Evidence     []string      `json:"evidence"`
	TraceIDs     []string      `json:"trace_ids,omitempty"`
	OpenedAt     time.Time     `json:"opened_at"`
	UpdatedAt    time.Time     `json:"updated_at"`
	Assignee     string        `json:"assignee,omitempty"`
	Reopens      int           `json:"reopens"`
	Offense      int           `json:"offense"`
	Transitions  []Transition  `json:"transitions"`
	Actions      []Action      `json:"actions,omitempty"`
	Timeline     []TimelineRow `json:"timeline,omitempty"`
	FollowUps    []FollowUp    `json:"follow_ups,omitempty"`
	History      []Entry       `json:"history"`
	// AuditedThrough is the Seq of the last History entry published as a
	// security event. Entries after it are published on the next save, so
	// a crash between the store write and the audit publish loses none.
	AuditedThrough int `json:"audited_through"`
}

// ThreatRef is the record an incident keeps of each threat that joined it.
type ThreatRef struct {
	ID        string    `json:"id"`
	Revision  int       `json:"revision"`
	RuleID    string    `json:"rule_id"`
	Severity  Severity  `json:"severity"`
	Count     int       `json:"count"`
	FirstSeen time.Time `json:"first_seen"`
	LastSeen  time.Time `json:"last_seen"`
	Summary   string    `json:"summary,omitempty"`
}

// Entry is one line of an incident's history. Each entry becomes one
// security event of type "incident.<kind>".
type Entry struct {
	Seq      int       `json:"seq"`
	At       time.Time `json:"at"`
	Actor    string    `json:"actor"`
	Kind     string    `json:"kind"`
	Detail   string    `json:"detail"`
	Failed   bool      `json:"failed,omitempty"`
	ActionID string    `json:"action_id,omitempty"`
}

// TimelineRow is one security event gathered by the investigation.
type TimelineRow struct {
	EventID  string    `json:"event_id"`
	Time     time.Time `json:"time"`
	Type     string    `json:"type"`
	Source   string    `json:"source"`
	Subject  string    `json:"subject,omitempty"`
	Action   string    `json:"action,omitempty"`
	Resource string    `json:"resource,omitempty"`
	Status   string    `json:"status,omitempty"`
	Severity string    `json:"severity,omitempty"`
	TraceID  string    `json:"trace_id,omitempty"`
	Evidence bool      `json:"evidence"`
}

// FollowUp is an open task for an operator, such as rotating a key at its
// provider, which no service can do offline.
type FollowUp struct {
	ID      string    `json:"id"`
	Created time.Time `json:"created"`
	Text    string    `json:"text"`
	Done    bool      `json:"done"`
}

// New returns an open incident for a validated threat. The caller adds the
// threat with [Incident.MergeThreat].
func New(id string, typ Type, subject IdentityInfo, at time.Time) *Incident {
	at = at.UTC()
	inc := &Incident{
		ID: id, Type: typ, State: StateOpen, Severity: SeverityInfo, Identity: subject,
		OpenedAt: at, UpdatedAt: at, Threats: []ThreatRef{}, Evidence: []string{},
		Transitions: []Transition{},
	}
	inc.record(at, ServiceActor, "opened", "incident opened for "+string(typ)+
		" by identity "+subject.ID)

	return inc
}

// ServiceActor is the actor recorded for steps the incident service takes on
// its own.
const ServiceActor = "service:incident"

// MergeThreat adds th to the incident, or updates the threat with the same
// ID. It returns false when th brings nothing new, so a redelivered threat
// changes nothing.
func (inc *Incident) MergeThreat(th *Threat, at time.Time) bool {
	changed := false
	i := slices.IndexFunc(inc.Threats, func(r ThreatRef) bool { return r.ID == th.ID })
	ref := ThreatRef{
		ID: th.ID, Revision: th.Revision, RuleID: th.RuleID, Severity: th.Severity,
		Count: max(th.Count, 1), FirstSeen: th.FirstSeen.UTC(), LastSeen: th.LastSeen.UTC(),
		Summary: th.Description,
	}
	switch {
	case i < 0:
		inc.Threats = append(inc.Threats, ref)
		changed = true
	case ref.Revision < inc.Threats[i].Revision:
		// An older revision delivered late brings nothing the newer one lacks.
		return false
	case ref.Revision > inc.Threats[i].Revision || ref.Count > inc.Threats[i].Count ||
		ref.LastSeen.After(inc.Threats[i].LastSeen):
		inc.Threats[i] = ref
		changed = true
	}
	for _, ev := range th.Evidence {
		if !slices.Contains(inc.Evidence, ev) {
			inc.Evidence = append(inc.Evidence, ev)
			changed = true
		}
	}
	for _, tr := range th.TraceIDs {
		if tr != "" && !slices.Contains(inc.TraceIDs, tr) {
			inc.TraceIDs = append(inc.TraceIDs, tr)
			changed = true
		}
	}
	for _, r := range th.Resources {
		if !slices.ContainsFunc(inc.Resources, func(x Resource) bool { return x.Key() == r.Key() }) {
			inc.Resources = append(inc.Resources, r)
			changed = true
		}
	}
	if changed {
		inc.UpdatedAt = at.UTC()
		inc.record(at, ServiceActor, "threat_joined", "threat "+th.ID+" from rule "+th.RuleID)
	}

	return changed
}

// ThreatCount returns the sum of the counts of all joined threats.
func (inc *Incident) ThreatCount() int {
	n := 0
	for _, t := range inc.Threats {
		n += t.Count
	}

	return n
}

// MaxThreatSeverity returns the highest severity monitor gave any joined threat.
func (inc *Incident) MaxThreatSeverity() Severity {
	best := SeverityInfo
	for _, t := range inc.Threats {
		if t.Severity.Rank() > best.Rank() {
			best = t.Severity
		}
	}

	return best
}

// Note records an operator's or the service's remark in the history.
func (inc *Incident) Note(at time.Time, actor, kind, detail string) {
	inc.record(at, actor, kind, detail)
}

func (inc *Incident) record(at time.Time, actor, kind, detail string) *Entry {
	inc.History = append(inc.History, Entry{
		Seq: len(inc.History) + 1, At: at.UTC(), Actor: actor, Kind: kind, Detail: detail,
	})

	return &inc.History[len(inc.History)-1]
}

// AddFollowUp adds an open task unless one with the same text exists.
func (inc *Incident) AddFollowUp(at time.Time, text string) {
	for _, f := range inc.FollowUps {
		if f.Text == text && !f.Done {
			return
		}
	}
	id := "f" + strconv.Itoa(len(inc.FollowUps)+1)
	inc.FollowUps = append(inc.FollowUps, FollowUp{ID: id, Created: at.UTC(), Text: text})
	inc.record(at, ServiceActor, "follow_up", text)
}

// Unaudited returns the history entries not yet published as security events.
func (inc *Incident) Unaudited() []Entry {
	if inc.AuditedThrough >= len(inc.History) {
		return nil
	}

	return inc.History[inc.AuditedThrough:]
}
