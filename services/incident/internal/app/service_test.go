package app_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/nodexsec/nodex/libs/events"
	"github.com/nodexsec/nodex/libs/testkit"
	"github.com/nodexsec/nodex/services/incident/internal/app"
	"github.com/nodexsec/nodex/services/incident/internal/domain"
)

func TestThreatContainsEachType(t *testing.T) {
	bundle := domain.Resource{Type: "bundle", ID: "b-123"}
	key := domain.Resource{Type: "key", ID: "openai/3"}
	tests := []struct {
		name    string
		typ     domain.Type
		res     []domain.Resource
		want    []string
		holding func(tg *targets) bool
	}{
		{
			name: "unauthorized access suspends identity", typ: domain.UnauthorizedAccess,
			want:    []string{"suspend_identity:agent-demo=done"},
			holding: func(tg *targets) bool { return tg.is(tg.suspended, "agent-demo") },
		},
		{
			name: "api abuse cuts key access and rate", typ: domain.APIAbuse,
			want: []string{"suspend_key_access:agent-demo=done",
				"tighten_rate_limit:agent-demo=done"},
			holding: func(tg *targets) bool {
				return tg.is(tg.keyAccess, "agent-demo") && tg.is(tg.rateLimited, "agent-demo")
			},
		},
		{
			name: "code injection revokes and kills", typ: domain.CodeInjection,
			res:  []domain.Resource{bundle},
			want: []string{"kill_sandboxes:agent-demo=done", "revoke_bundle:b-123=done"},
			holding: func(tg *targets) bool {
				return tg.is(tg.revoked, "b-123") && tg.killed["agent-demo"] == 1
			},
		},
		{
			name: "data breach disables keys and suspends", typ: domain.DataBreach,
			res:  []domain.Resource{key},
			want: []string{"disable_key_version:openai/3=done", "suspend_identity:agent-demo=done"},
			holding: func(tg *targets) bool {
				return tg.is(tg.disabled, "openai/3") && tg.is(tg.suspended, "agent-demo")
			},
		},
		{
			name: "system compromise quarantines and alerts", typ: domain.SystemCompromise,
			want: []string{"alert:" + "INCIDENT" + "=done", "quarantine_identity:agent-demo=done"},
			holding: func(tg *targets) bool {
				return tg.is(tg.quarantined, "agent-demo") && len(tg.alerts) == 1
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			inc := e.handle(e.threat("th-1", tt.typ, "agent-demo", tt.res...))
			if inc.State != domain.StateContained {
				t.Fatalf("state = %s, want contained; actions %v", inc.State, actionStatuses(inc))
			}
			want := make([]string, len(tt.want))
			for i, w := range tt.want {
				want[i] = strings.ReplaceAll(w, "INCIDENT", inc.ID)
			}
			if diff := cmp.Diff(want, actionStatuses(inc)); diff != "" {
				t.Errorf("actions (-want +got):\n%s", diff)
			}
			if !tt.holding(e.targets) {
				t.Errorf("containment does not hold in the target services")
			}
			if inc.Severity.Rank() < domain.SeverityHigh.Rank() {
				t.Errorf("severity = %s, want at least high (monitor said high)", inc.Severity)
			}
		})
	}
}

func TestDuplicateThreatsJoinOneIncident(t *testing.T) {
	e := newEnv(t)
	first := e.handle(e.threat("th-1", domain.UnauthorizedAccess, "agent-demo"))
	again := e.handle(e.threat("th-1", domain.UnauthorizedAccess, "agent-demo"))
	second := e.threat("th-2", domain.UnauthorizedAccess, "agent-demo")
	second.Evidence = []string{"th-2-ev1", "th-2-ev2"}
	joined := e.handle(second)
	other := e.handle(e.threat("th-3", domain.UnauthorizedAccess, "agent-two"))

	if again.ID != first.ID || joined.ID != first.ID {
		t.Fatalf("incident ids %s, %s, %s; want one incident", first.ID, again.ID, joined.ID)
	}
	if other.ID == first.ID {
		t.Errorf("another identity joined incident %s", first.ID)
	}
	if got := len(joined.Threats); got != 2 {
		t.Errorf("threats = %d, want 2", got)
	}
	if got := len(joined.Evidence); got != 3 {
		t.Errorf("evidence = %d, want 3", got)
	}
	if got := e.targets.count("SuspendIdentity"); got != 2 {
		t.Errorf("SuspendIdentity calls = %d, want 2 (one per identity)", got)
	}
	list, err := e.svc.List(context.Background(), app.ListFilter{Identity: "agent-demo"})
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 1 {
		t.Errorf("incidents of agent-demo = %d, want 1", len(list))
	}
}

func TestRestartResumesIncident(t *testing.T) {
	dir := t.TempDir()
	e := newEnv(t)
	e.srv.Shutdown()
	e.srv.WaitForShutdown()
	e.srv = testkit.NATSServerAt(t, dir)
	e.start()
	e.targets.fail("SuspendIdentity", errors.New("registry unavailable"))

	inc := e.handle(e.threat("th-1", domain.UnauthorizedAccess, "agent-demo"))
	if inc.State != domain.StateAssessed {
		t.Fatalf("state with a failing target = %s, want assessed", inc.State)
	}
	if got := inc.Actions[0].Status; got != domain.StatusFailed {
		t.Fatalf("action status = %s, want failed", got)
	}
	if len(inc.FollowUps) == 0 {
		t.Errorf("a failed action left no follow-up")
	}

	// Restart the server on the same state and build a new service on it.
	e.srv.Shutdown()
	e.srv.WaitForShutdown()
	e.srv = testkit.NATSServerAt(t, dir)
	e.start()
	e.targets.fail("SuspendIdentity", nil)
	if err := e.svc.Resume(context.Background()); err != nil {
		t.Fatalf("Resume: %v", err)
	}
	inc = e.get(inc.ID)
	if inc.State != domain.StateContained {
		t.Fatalf("state after resume = %s, want contained", inc.State)
	}
	if got := inc.Actions[0].Attempts; got != 2 {
		t.Errorf("attempts = %d, want 2", got)
	}
	if !e.targets.is(e.targets.suspended, "agent-demo") {
		t.Errorf("agent-demo not suspended after resume")
	}
}

func TestOperatorCannotSkipStates(t *testing.T) {
	e := newEnv(t)
	inc := e.handle(e.threat("th-1", domain.UnauthorizedAccess, "agent-demo"))
	steps := []struct {
		verb    app.Verb
		wantErr bool
		want    domain.State
	}{
		{app.VerbRemediate, true, domain.StateContained},
		{app.VerbClose, true, domain.StateContained},
		{app.VerbReopen, true, domain.StateContained},
		{app.VerbContain, true, domain.StateContained},
		{app.VerbAck, false, domain.StateInvestigating},
		{app.VerbClose, true, domain.StateInvestigating},
		{app.VerbRemediate, false, domain.StateRemediated},
		{app.VerbAck, true, domain.StateRemediated},
		{app.VerbClose, false, domain.StateClosed},
		{app.VerbRemediate, true, domain.StateClosed},
		{app.VerbReopen, false, domain.StateContained},
	}
	for _, st := range steps {
		_, err := e.update("operator", inc.ID, st.verb, "")
		if st.wantErr && !errors.Is(err, domain.ErrIllegalTransition) {
			t.Errorf("%s: err = %v, want ErrIllegalTransition", st.verb, err)
		}
		if !st.wantErr && err != nil {
			t.Errorf("%s: %v", st.verb, err)
		}
		if got := e.get(inc.ID).State; got != st.want {
			t.Errorf("after %s: state = %s, want %s", st.verb, got, st.want)
		}
	}
}

func TestIllegalTransitionNamesNextStep(t *testing.T) {
	e := newEnv(t)
	inc := e.handle(e.threat("th-1", domain.UnauthorizedAccess, "agent-demo"))
	_, err := e.update("operator", inc.ID, app.VerbClose, "")
	if err == nil {
		t.Fatal("close of a contained incident succeeded")
	}
	for _, want := range []string{inc.ID, "contained", `"ack"`} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not name %s", err, want)
		}
	}
}

func TestTransitionsAreAudited(t *testing.T) {
	e := newEnv(t)
	inc := e.handle(e.threat("th-1", domain.UnauthorizedAccess, "agent-demo"))
	for _, verb := range []app.Verb{app.VerbAck, app.VerbRemediate, app.VerbClose} {
		if _, err := e.update("operator", inc.ID, verb, ""); err != nil {
			t.Fatalf("%s: %v", verb, err)
		}
	}

	inc = e.get(inc.ID)
	var got []string
	actors := map[string]bool{}
	for _, ev := range e.auditEvents(inc.ID) {
		if ev.Type == "incident.transition" {
			got = append(got, ev.Metadata["detail"][:strings.Index(ev.Metadata["detail"], ":")])
			actors[ev.Subject] = true
		}
	}

	want := []string{"open -> assessed", "assessed -> contained",
		"contained -> investigating", "investigating -> remediated", "remediated -> closed"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("audited transitions (-want +got):\n%s", diff)
	}
	if !actors["incident"] || !actors["operator"] {
		t.Errorf("audit actors = %v, want incident and operator", actors)
	}

	if len(inc.Transitions) != 5 {
		t.Errorf("recorded transitions = %d, want 5", len(inc.Transitions))
	}
	if inc.AuditedThrough != len(inc.History) {
		t.Errorf("audited through %d of %d entries", inc.AuditedThrough, len(inc.History))
	}
	for _, tr := range inc.Transitions {
		if tr.At.IsZero() || tr.Actor == "" || tr.Reason == "" {
			t.Errorf("transition %+v lacks time, actor or reason", tr)
		}
	}
}

func TestServiceIdentityAwaitsApproval(t *testing.T) {
	e := newEnv(t)
	inc := e.handle(e.threat("th-1", domain.UnauthorizedAccess, "codesec"))
	if inc.State != domain.StateAssessed {
		t.Fatalf("state = %s, want assessed until approval", inc.State)
	}
	if got := e.targets.count("SuspendIdentity"); got != 0 {
		t.Fatalf("service identity suspended without approval (%d calls)", got)
	}
	a := inc.Actions[0]
	if a.Status != domain.StatusAwaitingApprove || !strings.Contains(a.ApprovalReason, "service") {
		t.Errorf("action = %s (%q), want awaiting approval for a service identity",
			a.Status, a.ApprovalReason)
	}
	inc, err := e.update("operator", inc.ID, app.VerbApprove, a.ID)
	if err != nil {
		t.Fatalf("approve: %v", err)
	}
	if inc.State != domain.StateContained {
		t.Errorf("state after approval = %s, want contained", inc.State)
	}
	if inc.Actions[0].ApprovedBy != "operator" {
		t.Errorf("approved by %q, want operator", inc.Actions[0].ApprovedBy)
	}
}

func TestLastOperatorAwaitsApproval(t *testing.T) {
	e := newEnv(t)
	e.dir.mu.Lock()
	delete(e.dir.identities, "operator-two")
	e.dir.mu.Unlock()
	inc := e.handle(e.threat("th-1", domain.UnauthorizedAccess, "operator"))
	if inc.State != domain.StateAssessed {
		t.Fatalf("state = %s, want assessed", inc.State)
	}
	if !strings.Contains(inc.Actions[0].ApprovalReason, "last active operator") {
		t.Errorf("approval reason = %q, want last active operator", inc.Actions[0].ApprovalReason)
	}
	_, err := e.update("operator", inc.ID, app.VerbContain, "")
	if !errors.Is(err, app.ErrSelfApproval) {
		t.Errorf("self approval err = %v, want ErrSelfApproval", err)
	}
	if got := e.targets.count("SuspendIdentity"); got != 0 {
		t.Errorf("last operator suspended (%d calls)", got)
	}
}

func TestOperatorWithPeerIsContained(t *testing.T) {
	e := newEnv(t)
	inc := e.handle(e.threat("th-1", domain.UnauthorizedAccess, "operator"))
	if inc.State != domain.StateContained {
		t.Errorf("state = %s, want contained while another operator is active", inc.State)
	}
}

func TestUnknownIdentityAwaitsApproval(t *testing.T) {
	e := newEnv(t)
	inc := e.handle(e.threat("th-1", domain.UnauthorizedAccess, "conn-127.0.0.1-4222"))
	if inc.State != domain.StateAssessed {
		t.Fatalf("state = %s, want assessed", inc.State)
	}
	if got := e.targets.count("SuspendIdentity"); got != 0 {
		t.Errorf("unauthenticated identity suspended automatically (%d calls)", got)
	}
	if !strings.Contains(inc.Actions[0].ApprovalReason, "not in the registry") {
		t.Errorf("approval reason = %q", inc.Actions[0].ApprovalReason)
	}
}

func TestApprovalModeFromConfig(t *testing.T) {
	e := newEnv(t)
	e.policy.Playbooks[domain.UnauthorizedAccess] = []domain.ActionRule{
		{Kind: domain.ActSuspendIdentity, Mode: domain.ModeApproval},
	}
	e.start()
	inc := e.handle(e.threat("th-1", domain.UnauthorizedAccess, "agent-demo"))
	if inc.Actions[0].Status != domain.StatusAwaitingApprove {
		t.Fatalf("action = %s, want awaiting approval", inc.Actions[0].Status)
	}
	inc, err := e.update("operator", inc.ID, app.VerbContain, "")
	if err != nil {
		t.Fatalf("contain: %v", err)
	}
	if inc.State != domain.StateContained {
		t.Errorf("state = %s, want contained", inc.State)
	}
}

func TestFailedContainIsReported(t *testing.T) {
	e := newEnv(t)
	e.targets.fail("SuspendIdentity", errors.New("registry unavailable"))
	inc := e.handle(e.threat("th-1", domain.UnauthorizedAccess, "agent-demo"))
	_, err := e.update("operator", inc.ID, app.VerbContain, "")
	if !errors.Is(err, app.ErrNotContained) {
		t.Fatalf("contain err = %v, want ErrNotContained", err)
	}
	if !strings.Contains(err.Error(), "registry unavailable") {
		t.Errorf("error %q does not carry the cause", err)
	}
	failures := 0
	for _, ev := range e.auditEvents(inc.ID) {
		if ev.Type == "incident.action" && ev.Status == "failure" {
			failures++
		}
	}
	if failures != 2 {
		t.Errorf("failure events = %d, want 2 (automatic and operator attempt)", failures)
	}
}

func TestExpiryLiftsAndEscalates(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	first := e.handle(e.threat("th-1", domain.UnauthorizedAccess, "agent-demo"))
	if got := first.Actions[0].Expiry; got != time.Hour {
		t.Fatalf("first offence expiry = %s, want 1h", got)
	}
	e.clock.Add(59 * time.Minute)
	if err := e.svc.LiftExpired(ctx); err != nil {
		t.Fatal(err)
	}
	if !e.targets.is(e.targets.suspended, "agent-demo") {
		t.Fatal("suspension lifted before its expiry")
	}
	e.clock.Add(2 * time.Minute)
	if err := e.svc.LiftExpired(ctx); err != nil {
		t.Fatal(err)
	}
	if e.targets.is(e.targets.suspended, "agent-demo") {
		t.Fatal("suspension still holds after expiry")
	}
	lifted := e.get(first.ID).Actions[0]
	if lifted.Status != domain.StatusLifted || lifted.Lift == nil ||
		lifted.Lift.Actor != domain.ServiceActor {
		t.Errorf("lift not recorded: %+v", lifted)
	}

	for _, verb := range []app.Verb{app.VerbAck, app.VerbRemediate, app.VerbClose} {
		if _, err := e.update("operator", first.ID, verb, ""); err != nil {
			t.Fatalf("%s: %v", verb, err)
		}
	}
	second := e.handle(e.threat("th-2", domain.UnauthorizedAccess, "agent-demo"))
	if second.ID == first.ID {
		t.Fatal("a threat after close joined the closed incident")
	}
	if got := second.Actions[0].Expiry; got != 2*time.Hour {
		t.Errorf("second offence expiry = %s, want 2h", got)
	}
	if second.Offense != 2 {
		t.Errorf("offence = %d, want 2", second.Offense)
	}
}

func TestOperatorLiftIsRecorded(t *testing.T) {
	e := newEnv(t)
	inc := e.handle(e.threat("th-1", domain.UnauthorizedAccess, "agent-demo"))
	inc, err := e.update("operator", inc.ID, app.VerbLift, inc.Actions[0].ID)
	if err != nil {
		t.Fatalf("lift: %v", err)
	}
	if e.targets.is(e.targets.suspended, "agent-demo") {
		t.Error("agent-demo still suspended after lift")
	}
	if l := inc.Actions[0].Lift; l == nil || l.Actor != "operator" || l.Reason != "test lift" {
		t.Errorf("lift = %+v, want actor operator and the reason", l)
	}
	if _, err := e.update("operator", inc.ID, app.VerbLift, inc.Actions[0].ID); !errors.Is(err,
		domain.ErrActionState) {
		t.Errorf("second lift err = %v, want ErrActionState", err)
	}
	lifts := 0
	for _, ev := range e.auditEvents(inc.ID) {
		if ev.Type == "incident.lift" {
			lifts++
		}
	}
	if lifts != 1 {
		t.Errorf("lift events = %d, want 1", lifts)
	}
}

func TestInvalidThreatIsRejected(t *testing.T) {
	e := newEnv(t)
	th := e.threat("th-1", domain.UnauthorizedAccess, "agent-demo")
	th.Type = "MADE_UP"
	if _, err := e.svc.HandleThreat(context.Background(), th); !errors.Is(err,
		domain.ErrInvalidThreat) {
		t.Errorf("err = %v, want ErrInvalidThreat", err)
	}
}

func TestRevisionsKeepHistory(t *testing.T) {
	e := newEnv(t)
	inc := e.handle(e.threat("th-1", domain.UnauthorizedAccess, "agent-demo"))
	revs, err := e.svc.Revisions(context.Background(), inc.ID)
	if err != nil {
		t.Fatal(err)
	}
	if len(revs) < 3 {
		t.Fatalf("revisions = %d, want at least 3", len(revs))
	}
	for i := 1; i < len(revs); i++ {
		if revs[i].Revision <= revs[i-1].Revision || revs[i].Entries < revs[i-1].Entries {
			t.Errorf("revision %d does not extend revision %d", revs[i].Revision,
				revs[i-1].Revision)
		}
	}
}

func TestAckGathersRelatedEvents(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	pub := events.NewPublisher(jsSink{e.js}, "keyvault", events.PublisherOptions{})
	now := e.clock.Now()
	publish := func(id, subject, trace string, at time.Time) {
		t.Helper()
		err := pub.PublishSync(ctx, events.SecurityEvent{
			ID: id, Type: "keyvault.retrieve", Time: at, Subject: subject, TraceID: trace,
			Status: events.StatusFailure, Severity: events.SeverityMedium,
		})
		if err != nil {
			t.Fatalf("publishing event %s: %v", id, err)
		}
	}
	evidence := "0b7e6c1e-0000-4000-8000-000000000001"
	publish(evidence, "agent-demo", "4bf92f3577b34da6a3ce929d0e0e4736", now.Add(-time.Minute))
	publish("0b7e6c1e-0000-4000-8000-000000000005", "", "4bf92f3577b34da6a3ce929d0e0e4736",
		now.Add(-time.Minute))
	publish("0b7e6c1e-0000-4000-8000-000000000002", "agent-demo", "", now.Add(-2*time.Minute))
	publish("0b7e6c1e-0000-4000-8000-000000000003", "agent-two", "", now)
	publish("0b7e6c1e-0000-4000-8000-000000000004", "agent-demo", "", now.Add(-time.Hour))

	th := e.threat("th-1", domain.UnauthorizedAccess, "agent-demo")
	th.Evidence = []string{evidence}
	inc := e.handle(th)
	inc, err := e.update("operator", inc.ID, app.VerbAck, "")
	if err != nil {
		t.Fatalf("ack: %v", err)
	}
	var got []string
	evidenceMarked := false
	for _, row := range inc.Timeline {
		if row.Type == "keyvault.retrieve" {
			got = append(got, row.EventID[len(row.EventID)-1:])
		}
		if row.EventID == evidence {
			evidenceMarked = row.Evidence
		}
	}
	if diff := cmp.Diff([]string{"2", "1", "5"}, got); diff != "" {
		t.Errorf("gathered events (-want +got):\n%s", diff)
	}
	if !evidenceMarked {
		t.Error("evidence event not marked as evidence")
	}
	if inc.Assignee != "operator" {
		t.Errorf("assignee = %q, want operator", inc.Assignee)
	}
	r, md, err := e.svc.Report(ctx, inc.ID)
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Events) != len(inc.Timeline) || !strings.Contains(md, evidence) {
		t.Errorf("report lacks the gathered events or the evidence id")
	}
}

func closeIncident(t *testing.T, e *env, id string) {
	t.Helper()
	for _, verb := range []app.Verb{app.VerbAck, app.VerbRemediate, app.VerbClose} {
		if _, err := e.update("operator", id, verb, ""); err != nil {
			t.Fatalf("%s: %v", verb, err)
		}
	}
}

func TestRedeliveryAfterCloseOpensNothing(t *testing.T) {
	e := newEnv(t)
	th := e.threat("th-1", domain.UnauthorizedAccess, "agent-demo")
	first := e.handle(th)
	closeIncident(t, e, first.ID)

	again := e.handle(th)
	if again.ID != first.ID || again.State != domain.StateClosed {
		t.Errorf("redelivered threat went to %s (%s), want closed %s", again.ID, again.State,
			first.ID)
	}
	list, err := e.svc.List(context.Background(), app.ListFilter{})
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 1 {
		t.Fatalf("incidents = %d after redelivery, want 1", len(list))
	}

	th.Revision++
	th.Count++
	next := e.handle(th)
	if next.ID == first.ID {
		t.Error("a new revision after close joined the closed incident")
	}
}

func TestStaleSlotOfClosedIncident(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	first := e.handle(e.threat("th-1", domain.UnauthorizedAccess, "agent-demo"))
	closeIncident(t, e, first.ID)
	// A crash between the close and the release leaves the slot taken.
	if _, err := e.store.ClaimOpen(ctx, domain.UnauthorizedAccess, "agent-demo",
		first.ID); err != nil {
		t.Fatalf("re-taking the slot: %v", err)
	}
	next := e.handle(e.threat("th-2", domain.UnauthorizedAccess, "agent-demo"))
	if next.ID == first.ID {
		t.Fatal("a new threat joined the closed incident through a stale slot")
	}
	if next.State != domain.StateContained {
		t.Errorf("new incident state = %s, want contained", next.State)
	}
}

func TestOriginThreatWaitsForOperator(t *testing.T) {
	e := newEnv(t)
	th := e.threat("th-1", domain.UnauthorizedAccess, "")
	th.Origin = "127.0.0.1:50123"
	inc := e.handle(th)
	if inc.Identity.ID != domain.OriginPrefix+"127.0.0.1:50123" || inc.Identity.Known {
		t.Errorf("identity = %+v, want the unauthenticated origin", inc.Identity)
	}
	if inc.State != domain.StateAssessed || len(inc.Actions) != 0 {
		t.Fatalf("state %s with %d actions, want assessed with none", inc.State,
			len(inc.Actions))
	}
	if len(inc.FollowUps) != 1 {
		t.Errorf("follow-ups = %d, want 1 asking to identify the sender", len(inc.FollowUps))
	}
	inc, err := e.update("operator", inc.ID, app.VerbContain, "")
	if err != nil {
		t.Fatalf("contain: %v", err)
	}
	if inc.State != domain.StateContained {
		t.Errorf("state after operator contain = %s, want contained", inc.State)
	}
	if got := e.targets.count("SuspendIdentity"); got != 0 {
		t.Errorf("SuspendIdentity calls = %d for a transport origin", got)
	}
}

func TestJoinedThreatRaisesSeverity(t *testing.T) {
	e := newEnv(t)
	th := e.threat("th-1", domain.APIAbuse, "agent-demo")
	th.Severity = domain.SeverityLow
	inc := e.handle(th)
	if inc.Severity != domain.SeverityLow {
		t.Fatalf("first severity = %s, want low", inc.Severity)
	}
	worse := e.threat("th-2", domain.APIAbuse, "agent-demo")
	worse.Severity = domain.SeverityCritical
	inc = e.handle(worse)
	if inc.Severity != domain.SeverityCritical {
		t.Errorf("severity after a critical threat = %s, want critical", inc.Severity)
	}
	reassessed := 0
	for _, ev := range e.auditEvents(inc.ID) {
		if ev.Type == "incident.reassessed" {
			reassessed++
		}
	}
	if reassessed != 1 {
		t.Errorf("reassessed events = %d, want 1", reassessed)
	}
}

func TestReplicasOpenOneIncident(t *testing.T) {
	e := newEnv(t)
	first := e.svc
	e.start()
	second := e.svc
	const threats = 8
	errc := make(chan error, threats)
	ids := make(chan string, threats)
	for i := range threats {
		svc := first
		if i%2 == 1 {
			svc = second
		}
		th := e.threat(fmt.Sprintf("th-%d", i), domain.UnauthorizedAccess, "agent-demo")
		go func() {
			id, err := svc.HandleThreat(context.Background(), th)
			errc <- err
			ids <- id
		}()
	}
	seen := map[string]bool{}
	for range threats {
		if err := <-errc; err != nil {
			t.Errorf("HandleThreat: %v", err)
		}
		seen[<-ids] = true
	}
	if len(seen) != 1 {
		t.Fatalf("replicas opened %d incidents, want 1", len(seen))
	}
	for id := range seen {
		inc := e.get(id)
		if len(inc.Threats) != threats {
			t.Errorf("threats joined = %d, want %d", len(inc.Threats), threats)
		}
		if inc.State != domain.StateContained {
			t.Errorf("state = %s, want contained", inc.State)
		}
		if len(inc.Actions) != 1 {
			t.Errorf("actions = %d, want 1", len(inc.Actions))
		}
	}
}

func TestFailedLiftRetriesAfterDelay(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	inc := e.handle(e.threat("th-1", domain.UnauthorizedAccess, "agent-demo"))
	e.targets.fail("UnsuspendIdentity", errors.New("needs the root key"))
	e.clock.Add(61 * time.Minute)
	if err := e.svc.LiftExpired(ctx); err == nil {
		t.Fatal("LiftExpired with a failing target returned no error")
	}
	for range 3 {
		e.clock.Add(time.Minute)
		if err := e.svc.LiftExpired(ctx); err != nil {
			t.Errorf("LiftExpired within the retry delay: %v", err)
		}
	}
	if got := e.targets.count("UnsuspendIdentity"); got != 1 {
		t.Errorf("lift attempts within the retry delay = %d, want 1", got)
	}
	e.targets.fail("UnsuspendIdentity", nil)
	e.clock.Add(5 * time.Minute)
	if err := e.svc.LiftExpired(ctx); err != nil {
		t.Fatalf("LiftExpired after the delay: %v", err)
	}
	if got := e.get(inc.ID).Actions[0].Status; got != domain.StatusLifted {
		t.Errorf("action status = %s, want lifted", got)
	}
}

func TestContainedLoggedOnce(t *testing.T) {
	e := newEnv(t)
	inc := e.handle(e.threat("th-1", domain.UnauthorizedAccess, "agent-demo"))
	if inc.State != domain.StateContained {
		t.Fatalf("state = %s, want contained", inc.State)
	}
	// Each sweep visits the contained incident again.
	for range 3 {
		if err := e.svc.Resume(context.Background()); err != nil {
			t.Fatalf("Resume: %v", err)
		}
	}
	if n := e.logs.count(`msg="incident contained"`); n != 1 {
		t.Errorf(`"incident contained" logged %d times, want once`, n)
	}
}
