package domain

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

var t0 = time.Date(2026, 12, 4, 12, 0, 0, 0, time.UTC)

// monitorThreat is a threat body as monitor publishes it.
const monitorThreat = `{"id":"thr_0a1b","revision":2,"type":"CODE_INJECTION",
"severity":"high","identity":"agent-demo","origin":"127.0.0.1:5000",
"group":"subject=agent-demo","resources":["bundle:b-1","key:openai-prod"],
"rule_id":"codesec-denied-burst","description":"3 denied submissions",
"evidence":["e1","e2"],"first_seen":"2026-12-04T11:59:00Z",
"last_seen":"2026-12-04T12:00:00Z","count":3}`

func TestThreatDecodesMonitorBody(t *testing.T) {
	dec := json.NewDecoder(bytes.NewReader([]byte(monitorThreat)))
	dec.DisallowUnknownFields()
	var th Threat
	if err := dec.Decode(&th); err != nil {
		t.Fatalf("decoding monitor threat: %v", err)
	}
	typ, err := th.Validate()
	if err != nil {
		t.Fatalf("Validate: %v", err)
	}
	if typ != CodeInjection {
		t.Errorf("type = %s, want CODE_INJECTION", typ)
	}
	want := []Resource{{Type: "bundle", ID: "b-1"}, {Type: "key", ID: "openai-prod"}}
	if diff := cmp.Diff(want, th.Resources); diff != "" {
		t.Errorf("resources (-want +got):\n%s", diff)
	}
}

func TestThreatValidateRejects(t *testing.T) {
	valid := func() Threat {
		return Threat{ID: "t", Type: "API_ABUSE", Severity: SeverityLow, Identity: "a", Count: 1}
	}
	tests := []struct {
		name   string
		change func(*Threat)
	}{
		{"unknown type", func(th *Threat) { th.Type = "PHISHING" }},
		{"missing id", func(th *Threat) { th.ID = "" }},
		{"no identity or origin", func(th *Threat) { th.Identity = "" }},
		{"bad severity", func(th *Threat) { th.Severity = "urgent" }},
		{"negative count", func(th *Threat) { th.Count = -1 }},
		{"too much evidence", func(th *Threat) {
			th.Evidence = make([]string, MaxEvidencePerThreat+1)
		}},
		{"resource without id", func(th *Threat) { th.Resources = []Resource{{Type: "bundle"}} }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			th := valid()
			tt.change(&th)
			if _, err := th.Validate(); !errors.Is(err, ErrInvalidThreat) {
				t.Errorf("Validate() = %v, want ErrInvalidThreat", err)
			}
		})
	}
	th := valid()
	if _, err := th.Validate(); err != nil {
		t.Errorf("valid threat rejected: %v", err)
	}
}

func TestLifecycleAllowsOnlyNextState(t *testing.T) {
	states := []State{StateOpen, StateAssessed, StateContained, StateInvestigating,
		StateRemediated, StateClosed}
	for _, from := range states {
		for _, to := range states {
			err := CheckTransition("inc-1", from, to)
			legal := next[from] == to
			if legal && err != nil {
				t.Errorf("%s -> %s rejected: %v", from, to, err)
			}
			if !legal && !errors.Is(err, ErrIllegalTransition) {
				t.Errorf("%s -> %s = %v, want ErrIllegalTransition", from, to, err)
			}
		}
	}
}

func TestMoveRecordsTransition(t *testing.T) {
	inc := New("inc-1", APIAbuse, IdentityInfo{ID: "a", Kind: KindAgent, Known: true}, t0)
	if err := inc.Move(StateAssessed, "operator", "scored", t0.Add(time.Second)); err != nil {
		t.Fatal(err)
	}
	want := Transition{From: StateOpen, To: StateAssessed, At: t0.Add(time.Second),
		Actor: "operator", Reason: "scored"}
	if diff := cmp.Diff([]Transition{want}, inc.Transitions); diff != "" {
		t.Errorf("transitions (-want +got):\n%s", diff)
	}
	if err := inc.Move(StateContained, "operator", "", t0); !errors.Is(err,
		ErrIllegalTransition) {
		t.Errorf("move without a reason = %v, want ErrIllegalTransition", err)
	}
}

func TestMergeThreatIsIdempotent(t *testing.T) {
	inc := New("inc-1", APIAbuse, IdentityInfo{ID: "a", Known: true}, t0)
	th := &Threat{ID: "t1", Revision: 2, Type: "API_ABUSE", Severity: SeverityLow,
		Identity: "a", Evidence: []string{"e1"}, Count: 4, LastSeen: t0}
	if !inc.MergeThreat(th, t0) {
		t.Fatal("first merge reported no change")
	}
	if inc.MergeThreat(th, t0) {
		t.Error("second merge of the same threat reported a change")
	}
	old := *th
	old.Revision, old.Count = 1, 2
	if inc.MergeThreat(&old, t0) {
		t.Error("older revision changed the incident")
	}
	if got := inc.Threats[0].Count; got != 4 {
		t.Errorf("count = %d, want 4", got)
	}
}

func TestAssessScoresDocumentedTerms(t *testing.T) {
	tests := []struct {
		name  string
		typ   Type
		kind  Kind
		known bool
		ev    int
		label map[string]string
		floor Severity
		want  int
		sev   Severity
	}{
		{"agent api abuse", APIAbuse, KindAgent, true, 1, nil, SeverityInfo, 30, SeverityLow},
		{"service identity", APIAbuse, KindService, true, 1, nil, SeverityInfo, 50,
			SeverityMedium},
		{"evidence capped at 20", UnauthorizedAccess, KindAgent, true, 10, nil, SeverityInfo,
			60, SeverityMedium},
		{"sensitive label", DataBreach, KindAgent, true, 1,
			map[string]string{"sensitivity": "high"}, SeverityInfo, 75, SeverityHigh},
		{"unknown identity", CodeInjection, KindAgent, false, 1, nil, SeverityInfo, 60,
			SeverityMedium},
		{"monitor floor", APIAbuse, KindAgent, true, 1, nil, SeverityCritical, 90,
			SeverityCritical},
		{"capped at 100", SystemCompromise, KindService, true, 5,
			map[string]string{"critical": "true"}, SeverityInfo, 100, SeverityCritical},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			inc := New("i", tt.typ, IdentityInfo{ID: "x", Kind: tt.kind, Known: tt.known}, t0)
			for i := range tt.ev {
				inc.Evidence = append(inc.Evidence, string(rune('a'+i)))
			}
			inc.Resources = []Resource{{Type: "key", ID: "k", Labels: tt.label}}
			inc.Threats = []ThreatRef{{ID: "t", Severity: tt.floor, Count: 1}}
			if got := inc.Assess(); got != tt.sev {
				t.Errorf("severity = %s, want %s (factors %v)", got, tt.sev, inc.ScoreFactors)
			}
			if inc.Score != tt.want {
				t.Errorf("score = %d, want %d (factors %v)", inc.Score, tt.want, inc.ScoreFactors)
			}
		})
	}
}

func TestEscalationExpiry(t *testing.T) {
	esc := Escalation{Factor: 2, MaxExpiry: 3 * time.Hour, PermanentFrom: 5}
	tests := []struct {
		offense int
		want    time.Duration
	}{{1, time.Hour}, {2, 2 * time.Hour}, {3, 3 * time.Hour}, {4, 3 * time.Hour}, {5, 0}}
	for _, tt := range tests {
		if got := esc.ExpiryFor(time.Hour, tt.offense); got != tt.want {
			t.Errorf("offence %d: expiry %s, want %s", tt.offense, got, tt.want)
		}
	}
	if got := esc.ExpiryFor(0, 1); got != 0 {
		t.Errorf("rule without expiry got %s", got)
	}
}

func TestPlanIsIdempotent(t *testing.T) {
	inc := New("i", CodeInjection, IdentityInfo{ID: "a", Kind: KindAgent, Known: true}, t0)
	inc.Resources = []Resource{{Type: "bundle", ID: "b1"}}
	rules := []ActionRule{{Kind: ActRevokeBundle, Mode: ModeAuto},
		{Kind: ActKillSandboxes, Mode: ModeAuto}}
	if got := len(inc.Plan(rules, Escalation{}, []string{"op"}, t0)); got != 2 {
		t.Fatalf("first plan added %d actions, want 2", got)
	}
	if got := len(inc.Plan(rules, Escalation{}, []string{"op"}, t0)); got != 0 {
		t.Errorf("second plan added %d actions, want 0", got)
	}
	inc.Resources = append(inc.Resources, Resource{Type: "bundle", ID: "b2"})
	if got := len(inc.Plan(rules, Escalation{}, []string{"op"}, t0)); got != 1 {
		t.Errorf("plan after a new bundle added %d actions, want 1", got)
	}
}

func TestPlanSkipsOriginIdentity(t *testing.T) {
	inc := New("i", UnauthorizedAccess, IdentityInfo{ID: OriginPrefix + "127.0.0.1:1"}, t0)
	added := inc.Plan([]ActionRule{{Kind: ActSuspendIdentity, Mode: ModeAuto}}, Escalation{},
		nil, t0)
	if len(added) != 0 {
		t.Errorf("planned %d actions against a transport origin", len(added))
	}
	if len(inc.FollowUps) != 1 || !strings.Contains(inc.FollowUps[0].Text, "no authenticated") {
		t.Errorf("follow-ups = %+v, want one naming the missing identity", inc.FollowUps)
	}
}

func TestMarkdownEscapesValues(t *testing.T) {
	inc := New("inc-1", APIAbuse, IdentityInfo{ID: "a|b\n| x | y |", Known: true}, t0)
	inc.MergeThreat(&Threat{ID: "t1", RuleID: "<script>", Severity: SeverityLow,
		Identity: "a", Evidence: []string{"e`1"}, Count: 1}, t0)
	r := inc.BuildReport(t0)
	md := r.Markdown()
	for _, bad := range []string{"a|b", "<script>", "\n| x |", "e`1"} {
		if strings.Contains(md, bad) {
			t.Errorf("markdown contains unescaped %q", bad)
		}
	}
	for _, section := range []string{"## Timeline", "## Evidence", "## Actions taken",
		"## Open follow-ups"} {
		if !strings.Contains(md, section) {
			t.Errorf("markdown lacks %q", section)
		}
	}
}
