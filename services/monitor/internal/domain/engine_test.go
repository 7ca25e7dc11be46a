package domain

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
)

var t0 = time.Date(2026, 12, 4, 12, 0, 0, 0, time.UTC)

func denialRule() Rule {
	return Rule{
		ID: "denials", Kind: KindThreshold, ThreatType: ThreatUnauthorizedAccess,
		Severity: "high", Match: Match{"type": {"authz.decision"}, "status": {"failure"}},
		GroupBy: []string{"identity"}, Threshold: 3, Window: time.Minute,
		AttributeIdentity: true, Dedupe: 10 * time.Minute,
	}
}

func denial(id, subject string, at time.Duration) *Observation {
	return &Observation{
		Event: Event{ID: id, Type: "authz.decision", Time: t0.Add(at), Source: "keyvault",
			Status: "failure", Severity: "medium", Subject: subject, Resource: "key/openai"},
		Sender: "service:keyvault", SenderKind: "service",
		Origin: "subject:nodex.v1.events.keyvault.authz_decision", At: t0.Add(at),
	}
}

func mustEngine(t *testing.T, rules ...Rule) *Engine {
	t.Helper()

	e, err := NewEngine(rules)
	if err != nil {
		t.Fatalf("NewEngine: %v", err)
	}

	return e
}

func TestThreatDedupeOneThreatPerAttack(t *testing.T) {
	e := mustEngine(t, denialRule())
	var revisions []Threat
	for i := range 1000 {
		due, _ := e.Observe(denial(fmt.Sprint(i), "agent-1", time.Duration(i)*time.Millisecond))
		revisions = append(revisions, due...)
	}

	if len(revisions) == 0 {
		t.Fatal("got no threat for 1000 denials")
	}
	if len(revisions) > 12 {
		t.Errorf("got %d revisions for 1000 denials, want about log2(1000)", len(revisions))
	}
	ids := make(map[string]bool)
	for _, th := range revisions {
		ids[th.ID] = true
	}
	if len(ids) != 1 {
		t.Errorf("got %d threat ids, want 1", len(ids))
	}
	last := revisions[len(revisions)-1]
	if last.Revision != len(revisions) {
		t.Errorf("last revision: got %d, want %d", last.Revision, len(revisions))
	}
	if len(last.Evidence) != MaxEvidence {
		t.Errorf("evidence: got %d ids, want the cap %d", len(last.Evidence), MaxEvidence)
	}

	open := e.OpenThreats()
	if len(open) != 1 || open[0].Count != 1000 {
		t.Errorf("open threats: got %+v, want one with count 1000", open)
	}
}

func TestThresholdCountsDistinctIDs(t *testing.T) {
	e := mustEngine(t, denialRule())
	var got []Threat
	for i := range 10 {
		// The same event delivered again (a replay) counts once.
		due, _ := e.Observe(denial("same-id", "agent-1", time.Duration(i)*time.Second))
		got = append(got, due...)
	}
	if len(got) != 0 {
		t.Errorf("got %d threats from one event id seen 10 times, want 0", len(got))
	}
}

func TestThreatReopensAfterDedupe(t *testing.T) {
	e := mustEngine(t, denialRule())
	var first, second []Threat
	for i := range 3 {
		due, _ := e.Observe(denial(fmt.Sprint("a", i), "agent-1", 0))
		first = append(first, due...)
	}
	for i := range 3 {
		due, _ := e.Observe(denial(fmt.Sprint("b", i), "agent-1", time.Hour))
		second = append(second, due...)
	}
	if len(first) != 1 || len(second) != 1 {
		t.Fatalf("got %d and %d threats, want 1 and 1", len(first), len(second))
	}
	if first[0].ID == second[0].ID {
		t.Errorf("attack an hour later reused threat id %s, want a new threat", first[0].ID)
	}
}

func TestForgedEventNamesOriginNotClaimedIdentity(t *testing.T) {
	r := denialRule()
	e := mustEngine(t, r)
	var got []Threat
	for i := range 3 {
		o := denial(fmt.Sprint(i), "service:codesec", 0)
		// The envelope did not verify: the claimed subject is not evidence.
		o.Sender, o.SenderKind = "", ""
		o.Origin = "subject:nodex.v1.events.keyvault.authz_decision"
		due, _ := e.Observe(o)
		got = append(got, due...)
	}
	if len(got) != 1 {
		t.Fatalf("got %d threats, want 1", len(got))
	}
	if got[0].Identity != "" {
		t.Errorf("identity: got %q, want empty for unauthenticated events", got[0].Identity)
	}
	if got[0].Origin != "subject:nodex.v1.events.keyvault.authz_decision" {
		t.Errorf("origin: got %q", got[0].Origin)
	}
	if strings.Contains(got[0].Group, "codesec") {
		t.Errorf("group %q names the claimed identity", got[0].Group)
	}
}

func TestAgentCannotAccuseAnotherIdentity(t *testing.T) {
	o := denial("x", "agent-2", 0)
	o.Sender, o.SenderKind = "agent-1", "agent"
	if got := o.Identity(); got != "" {
		t.Errorf("agent-1's event about agent-2: identity %q, want empty", got)
	}
	o.Event.Subject = "agent-1"
	if got := o.Identity(); got != "agent-1" {
		t.Errorf("agent-1's event about itself: identity %q, want agent-1", got)
	}
}

func TestSetRulesKeepsUnchangedState(t *testing.T) {
	e := mustEngine(t, denialRule())
	e.Observe(denial("1", "agent-1", 0))
	e.Observe(denial("2", "agent-1", time.Second))
	if err := e.SetRules([]Rule{denialRule()}); err != nil {
		t.Fatalf("SetRules: %v", err)
	}
	if got, _ := e.Observe(denial("3", "agent-1", 2*time.Second)); len(got) != 1 {
		t.Errorf("got %d threats after reload with the same rule, want 1", len(got))
	}
}

func TestSetRulesRejectsInvalid(t *testing.T) {
	e := mustEngine(t, denialRule())
	bad := denialRule()
	bad.Window = 0
	if err := e.SetRules([]Rule{bad}); err == nil {
		t.Fatal("SetRules accepted a threshold rule without window")
	}
	if got := e.Rules(); len(got) != 1 || got[0].Window != time.Minute {
		t.Errorf("rules after rejected reload: got %+v, want the old set", got)
	}
}

func TestRestoreThreatContinuesIt(t *testing.T) {
	e := mustEngine(t, denialRule())
	var raised []Threat
	for i := range 3 {
		due, _ := e.Observe(denial(fmt.Sprint(i), "agent-1", 0))
		raised = append(raised, due...)
	}

	restarted := mustEngine(t, denialRule())
	if !restarted.RestoreThreat(raised[0]) {
		t.Fatal("RestoreThreat: rule not found")
	}
	var after []Threat
	for i := 3; i < 6; i++ {
		due, _ := restarted.Observe(denial(fmt.Sprint(i), "agent-1", time.Second))
		after = append(after, due...)
	}
	for _, th := range after {
		if th.ID != raised[0].ID {
			t.Errorf("after restore: threat %s, want updates of %s", th.ID, raised[0].ID)
		}
	}
	open := restarted.OpenThreats()
	if len(open) != 1 || open[0].Count != 6 {
		t.Errorf("open threats after restore: got %+v, want one with count 6", open)
	}
}

func TestGroupKeyCannotBeForged(t *testing.T) {
	r := Rule{GroupBy: []string{"identity", "resource"}}
	a := denial("1", `x",resource="y`, 0)
	a.Event.Resource = ""
	b := denial("2", "x", 0)
	b.Event.Resource = "y"
	if groupKey(&r, a) == groupKey(&r, b) {
		t.Errorf("distinct groups share key %s", groupKey(&r, a))
	}
}

func TestGlobMatch(t *testing.T) {
	tests := []struct {
		pattern, s string
		want       bool
	}{
		{"keyvault.*", "keyvault.retrieve", true},
		{"keyvault.*", "codesec.finding", false},
		{"*", "bundle/abc", true},
		{"nodex.v1.*", "nodex.v1.keyvault.retrieve", true},
		{"a*b*c", "axxbyyc", true},
		{"a*b*c", "axxbyy", false},
		{"exact", "exact", true},
		{"exact", "exactly", false},
	}
	for _, tt := range tests {
		if got := globMatch(tt.pattern, tt.s); got != tt.want {
			t.Errorf("globMatch(%q, %q): got %v, want %v", tt.pattern, tt.s, got, tt.want)
		}
	}
}

func TestEscape(t *testing.T) {
	tests := []struct{ in, want string }{
		{"plain text", "plain text"},
		{"a\nlevel=ERROR msg=forged", `a\nlevel=ERROR msg=forged`},
		{"\x1b[2Jcleared", `\x1b[2Jcleared`},
		{"bad\xffutf8", `bad\xffutf8`},
		{"line\u2028sep", `line\u2028sep`},
		{`back\slash`, `back\\slash`},
	}
	for _, tt := range tests {
		if got := Escape(tt.in); got != tt.want {
			t.Errorf("Escape(%q): got %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestCheckEvent(t *testing.T) {
	valid := func() Event {
		return Event{ID: "8c7e1f7e-3f5e-4c39-9a1a-0c1b2d3e4f50", Type: "codesec.finding",
			Time: t0, Source: "codesec", Status: "failure", Severity: "critical"}
	}
	const subject = "nodex.v1.events.codesec.codesec.finding"
	if ev := valid(); CheckEvent(subject, "codesec", &ev) != nil {
		t.Fatalf("valid event rejected: %v", CheckEvent(subject, "codesec", &ev))
	}
	tests := []struct {
		name    string
		subject string
		sender  string
		change  func(*Event)
	}{
		{"missing id", subject, "codesec", func(e *Event) { e.ID = "" }},
		{"bad status", subject, "codesec", func(e *Event) { e.Status = "maybe" }},
		{"subject of other source", "nodex.v1.events.keyvault.codesec.finding", "codesec",
			func(*Event) {}},
		{"subject of other type", "nodex.v1.events.codesec.codesec.other", "codesec",
			func(*Event) {}},
		{"signer is not source", subject, "keyvault", func(*Event) {}},
		{"huge resource", subject, "codesec",
			func(e *Event) { e.Resource = strings.Repeat("r", 2000) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ev := valid()
			tt.change(&ev)
			if err := CheckEvent(tt.subject, tt.sender, &ev); !errors.Is(err, ErrInvalidEvent) {
				t.Errorf("CheckEvent: got %v, want ErrInvalidEvent", err)
			}
		})
	}
}

func TestMaxGroupsPerRule(t *testing.T) {
	e := mustEngine(t, denialRule())
	for i := range MaxGroupsPerRule + 10 {
		e.Observe(denial(fmt.Sprint(i), fmt.Sprint("agent-", i), 0))
	}
	if got := e.GroupsDropped(); got != 10 {
		t.Errorf("GroupsDropped: got %d, want 10", got)
	}
}

func TestLongResourceCut(t *testing.T) {
	e := mustEngine(t, Rule{ID: "one", Kind: KindSingle, ThreatType: ThreatAPIAbuse,
		Severity: "low", Match: Match{"type": {"*"}}, GroupBy: []string{"identity"},
		AttributeIdentity: true, Dedupe: time.Minute})
	o := denial("1", "agent-1", 0)
	o.Event.Resource = strings.Repeat("é", 300)
	due, _ := e.Observe(o)
	if len(due) != 1 {
		t.Fatalf("got %d threats, want 1", len(due))
	}
	if got := len(due[0].Resources[0]); got > MaxResourceBytes {
		t.Errorf("resource: got %d bytes, want <= %d", got, MaxResourceBytes)
	}
}

func TestObserveReportsEvidence(t *testing.T) {
	e := mustEngine(t, denialRule())
	for i, want := range []bool{false, false, true, true} {
		_, got := e.Observe(denial(fmt.Sprint(i), "agent-1", 0))
		if got != want {
			t.Errorf("denial %d of threshold 3: evidence %v, want %v", i+1, got, want)
		}
	}
	other := denial("x", "agent-1", 0)
	other.Event.Type = "keyvault.list"
	if _, got := e.Observe(other); got {
		t.Error("keyvault.list: evidence true, want false")
	}
}

func TestThreatFieldsFitConsumers(t *testing.T) {
	e := mustEngine(t, Rule{ID: "one", Kind: KindSingle, ThreatType: ThreatAPIAbuse,
		Severity: "low", Match: Match{"type": {"*"}}, GroupBy: []string{"identity"},
		AttributeIdentity: true, Dedupe: time.Minute})
	o := denial("1", strings.Repeat("a", 300), 0)
	o.Origin = "subject:" + strings.Repeat("s", 300)
	due, _ := e.Observe(o)
	if len(due) != 1 {
		t.Fatalf("got %d threats, want 1", len(due))
	}
	if due[0].Identity != "" {
		t.Errorf("identity: got %d bytes, want none for an overlong identity",
			len(due[0].Identity))
	}
	if len(due[0].Origin) > MaxResourceBytes {
		t.Errorf("origin: got %d bytes, want <= %d", len(due[0].Origin), MaxResourceBytes)
	}
}

func TestThresholdKeysBySignerAndID(t *testing.T) {
	e := mustEngine(t, denialRule())
	var got []Threat
	for _, sender := range []string{"keyvault", "codesec", "policy"} {
		o := denial("shared-id", "agent-1", 0)
		o.Sender = sender
		due, _ := e.Observe(o)
		got = append(got, due...)
	}
	if len(got) != 1 {
		t.Errorf("got %d threats from one id signed by 3 services, want 1", len(got))
	}
}

func TestWarmRaisesNothing(t *testing.T) {
	e := mustEngine(t, denialRule())
	for i := range 5 {
		e.Warm(denial(fmt.Sprint(i), "agent-1", 0))
	}
	if open := e.OpenThreats(); len(open) != 0 {
		t.Fatalf("Warm opened %d threats, want 0", len(open))
	}
	due, _ := e.Observe(denial("live", "agent-1", time.Second))
	if len(due) != 1 || due[0].Count != 6 {
		t.Errorf("first live denial after 5 warm ones: got %+v, want one threat of count 6", due)
	}
}
