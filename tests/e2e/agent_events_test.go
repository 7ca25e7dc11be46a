package e2e

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/nodexsec/nodex/libs/agent"
	"github.com/nodexsec/nodex/libs/errs"
	"github.com/nodexsec/nodex/libs/identity"
	"github.com/nodexsec/nodex/services/monitor/monitor"
)

// TestAgentReportsOwnEvents drives nodex.v1.monitor.report as an agent: a
// reported event is stored in NODEX_EVENTS under the agent's identity, a
// forged identity field is rejected, the monitor's own metadata cannot be
// forged, only agents may report, and a flood is rate limited.
func TestAgentReportsOwnEvents(t *testing.T) {
	sys := startSystem(t)
	ctx := context.Background()
	a, err := agent.Open(ctx, agent.Config{URL: sys.url,
		CredsFile: sys.credsPath(identity.DemoAgentID), Log: testLog(t)})
	if err != nil {
		t.Fatalf("opening agent: %v", err)
	}
	t.Cleanup(func() { _ = a.Close(context.Background()) })
	op := sys.openBuiltin(t, identity.OperatorID)
	reader := monitor.Reader{JS: op.JS, Codec: op.Codec}

	t.Run("stored as the agent", func(t *testing.T) {
		pub, err := a.PublishEvent(ctx, agent.Event{
			Type: "task_failed", Action: "fetch", Resource: "bundle:someone-else",
			Status: "failure", Severity: "critical",
			Metadata: map[string]string{"step": "download", "reported_via": "codesec"},
		})
		if err != nil {
			t.Fatalf("PublishEvent: %v", err)
		}
		if pub.Type != "agent.task_failed" || pub.Severity != "medium" {
			t.Errorf("reply type %q severity %q, want agent.task_failed and medium", pub.Type,
				pub.Severity)
		}
		ev := waitEvent(t, reader, "agent.task_failed", pub.ID)
		if ev.Source != identity.DemoAgentID || ev.Subject != identity.DemoAgentID {
			t.Errorf("source %q subject %q, want both %q", ev.Source, ev.Subject,
				identity.DemoAgentID)
		}
		if ev.Severity != "medium" || ev.Metadata["requested_severity"] != "critical" {
			t.Errorf("severity %q requested %q, want medium and critical", ev.Severity,
				ev.Metadata["requested_severity"])
		}
		if got := ev.Metadata["reported_via"]; got != monitor.SubjectReport {
			t.Errorf("metadata reported_via = %q, want %q", got, monitor.SubjectReport)
		}
		if ev.Metadata["step"] != "download" || ev.Status != "failure" {
			t.Errorf("event lost the agent's fields: %+v", ev)
		}
	})

	t.Run("forged identity rejected", func(t *testing.T) {
		forged := map[string]any{"type": "note", "source": "codesec", "subject": "operator"}
		var reply map[string]any
		err := a.Party().Bus.Request(ctx, agent.SubjectReport, agent.RoleMonitor, forged, &reply)
		if !errors.Is(err, errs.InvalidRequest) {
			t.Fatalf("report naming another identity: got %v, want invalid_request", err)
		}
		_, err = a.PublishEvent(ctx, agent.Event{Type: "codesec.finding"})
		if !errors.Is(err, errs.InvalidRequest) {
			t.Errorf("report of another namespace's type: got %v, want invalid_request", err)
		}
	})

	t.Run("operators denied", func(t *testing.T) {
		var reply map[string]any
		err := op.Bus.Request(ctx, agent.SubjectReport, agent.RoleMonitor,
			agent.Event{Type: "note"}, &reply)
		if !errors.Is(err, errs.AccessDenied) {
			t.Errorf("operator report: got %v, want access_denied", err)
		}
	})

	t.Run("flood rate limited", func(t *testing.T) {
		const sent = 60
		stored, limited := 0, 0
		start := time.Now()
		for range sent {
			_, err := a.PublishEvent(ctx, agent.Event{Type: "flood"})
			switch {
			case err == nil:
				stored++
			case errors.Is(err, errs.RateLimited):
				limited++
			default:
				t.Fatalf("PublishEvent: %v", err)
			}
		}
		// The bucket holds 20 reports and refills 2 per second; the
		// first subtest took one token.
		allowed := 20 + int(2*time.Since(start).Seconds()) + 1
		if limited == 0 || stored > allowed {
			t.Errorf("%d of %d reports stored, %d rate limited; want at most %d stored",
				stored, sent, limited, allowed)
		}
		evs, err := reader.TailEvents(ctx, monitor.EventFilter{Type: "agent.flood",
			Limit: 1000})
		if err != nil {
			t.Fatalf("TailEvents: %v", err)
		}
		if len(evs) != stored {
			t.Errorf("NODEX_EVENTS has %d agent.flood events, want the %d stored", len(evs),
				stored)
		}
	})
}

// waitEvent polls NODEX_EVENTS for the event of type typ with id.
func waitEvent(t *testing.T, reader monitor.Reader, typ, id string) monitor.Event {
	t.Helper()
	var found monitor.Event
	eventually(t, "event "+id+" stored", 20*time.Second, func() bool {
		evs, err := reader.TailEvents(context.Background(), monitor.EventFilter{Type: typ})
		if err != nil {
			t.Logf("TailEvents: %v", err)
			return false
		}
		for _, ev := range evs {
			if ev.ID == id {
				found = ev
				return true
			}
		}
		return false
	})

	return found
}
