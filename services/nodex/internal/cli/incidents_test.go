package cli

import (
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// provokeIncident creates an agent without key-reader roles and makes it
// request a key until policy denials raise an UNAUTHORIZED_ACCESS threat
// (the monitor's rule: 5 denials in 60 s) and the incident service opens
// an incident about it. It returns the incident id.
func provokeIncident(t *testing.T, name string) string {
	t.Helper()
	out := t.TempDir()
	mustRun(t, ExitOK, testKeyValue, "keys", "store", name+"-key", "--provider", "openai")
	mustRun(t, ExitOK, "", "agent", "create", name, "--out", out)
	creds := filepath.Join(out, name+".creds")
	for range 6 {
		nodex(t, "", "--creds", creds, "keys", "get", name+"-key")
	}

	var id string
	waitFor(t, func() bool {
		r := nodex(t, "", "--json", "incidents", "list", "--identity", name)
		var reply incidentListReply
		if r.code != ExitOK || json.Unmarshal([]byte(r.out), &reply) != nil {
			return false
		}
		if len(reply.Incidents) == 0 {
			return false
		}
		id = reply.Incidents[0].ID
		return true
	})

	return id
}

// incidentState returns the state of incident id.
func incidentState(t *testing.T, id string) string {
	t.Helper()
	r := mustRun(t, ExitOK, "", "--json", "incidents", "show", id)
	var reply struct {
		Incident incidentDetail `json:"incident"`
	}
	if err := json.Unmarshal([]byte(r.out), &reply); err != nil {
		t.Fatalf("decoding incidents show --json output %q: %v", r.out, err)
	}

	return reply.Incident.State
}

func TestIncidentsLifecycle(t *testing.T) {
	id := provokeIncident(t, "cli-intruder")

	r := mustRun(t, ExitOK, "", "incidents", "list")
	if !strings.Contains(r.out, id) || !strings.Contains(r.out, "UNAUTHORIZED_ACCESS") {
		t.Errorf("list output = %q, want %s of type UNAUTHORIZED_ACCESS", r.out, id)
	}
	r = mustRun(t, ExitOK, "", "incidents", "show", id)
	if !strings.Contains(r.out, "identity: cli-intruder (agent") {
		t.Errorf("show output = %q, want the identity line", r.out)
	}
	r = mustRun(t, ExitOK, "", "incidents", "report", id)
	if !strings.Contains(r.out, id) {
		t.Errorf("report output does not name the incident: %q", r.out)
	}

	waitFor(t, func() bool { return incidentState(t, id) == "contained" })
	mustRun(t, ExitUsage, "", "incidents", "ack", id)
	steps := []struct{ verb, state string }{
		{"ack", "investigating"}, {"remediate", "remediated"}, {"close", "closed"},
	}
	for _, s := range steps {
		r := mustRun(t, ExitOK, "", "incidents", s.verb, id, "--reason", "cli test "+s.verb)
		if !strings.Contains(r.out, s.state) {
			t.Errorf("%s output = %q, want state %s", s.verb, r.out, s.state)
		}
	}
	r = mustRun(t, ExitError, "", "incidents", "ack", id, "--reason", "too late")
	if !strings.Contains(r.err, "illegal_transition") {
		t.Errorf("ack of a closed incident: stderr %q, want illegal_transition", r.err)
	}
	mustRun(t, ExitOK, "", "incidents", "reopen", id, "--reason", "cli test reopen")
	mustRun(t, ExitNotFound, "", "incidents", "show", "inc_doesnotexist")
}

func TestThreatsAndEventsShowIncidentCause(t *testing.T) {
	provokeIncident(t, "cli-prober")

	r := mustRun(t, ExitOK, "", "threats", "list", "--identity", "cli-prober")
	if !strings.Contains(r.out, "UNAUTHORIZED_ACCESS") || !strings.Contains(r.out, "cli-prober") {
		t.Errorf("threats list output = %q, want an UNAUTHORIZED_ACCESS threat on cli-prober", r.out)
	}
	r = mustRun(t, ExitOK, "", "--json", "threats", "list", "--type", "UNAUTHORIZED_ACCESS")
	var threats threatsReply
	if err := json.Unmarshal([]byte(r.out), &threats); err != nil || len(threats.Threats) == 0 {
		t.Errorf("threats list --json = %q (%v), want at least one threat", r.out, err)
	}
	mustRun(t, ExitUsage, "", "threats", "list", "--type", "NOT_A_TYPE")

	r = mustRun(t, ExitOK, "", "events", "tail", "--type", "authz.decision",
		"--identity", "cli-prober", "--since", "10m")
	if strings.Count(r.out, "authz.decision") < 5 {
		t.Errorf("events tail output = %q, want at least 5 authz.decision events", r.out)
	}
	r = mustRun(t, ExitOK, "", "--json", "events", "tail", "--limit", "3")
	lines := strings.Split(strings.TrimSpace(r.out), "\n")
	if len(lines) != 3 {
		t.Errorf("events tail --json --limit 3 printed %d lines, want 3", len(lines))
	}
	mustRun(t, ExitUsage, "", "events", "tail", "--since", "yesterday")
	if strings.Contains(r.out, testKeyValue) {
		t.Error("events output contains a key value")
	}
}

func TestParseSince(t *testing.T) {
	now := time.Date(2026, 1, 2, 15, 0, 0, 0, time.UTC)
	got, err := parseSince("15m", now)
	if err != nil || !got.Equal(now.Add(-15*time.Minute)) {
		t.Errorf("parseSince(15m) = %v, %v", got, err)
	}
	got, err = parseSince("2026-01-01T00:00:00Z", now)
	if err != nil || got.Day() != 1 {
		t.Errorf("parseSince(RFC 3339) = %v, %v", got, err)
	}
	if _, err := parseSince("-5m", now); err == nil {
		t.Error("parseSince(-5m) succeeded")
	}
}

func TestIncidentsListInvalidFilter(t *testing.T) {
	r := mustRun(t, ExitUsage, "", "incidents", "list", "--state", "bogus")
	if !strings.Contains(r.err, `invalid --state "bogus"`) || !strings.Contains(r.err, "investigating") {
		t.Errorf("stderr = %q, want the value and the valid states", r.err)
	}
	r = mustRun(t, ExitUsage, "", "incidents", "list", "--type", "PHISHING")
	if !strings.Contains(r.err, `invalid --type "PHISHING"`) || !strings.Contains(r.err, "CODE_INJECTION") {
		t.Errorf("stderr = %q, want the value and the valid types", r.err)
	}
	mustRun(t, ExitOK, "", "incidents", "list", "--state", "closed", "--type", "API_ABUSE")
}

func TestIncidentNotFoundMessage(t *testing.T) {
	r := mustRun(t, ExitNotFound, "", "incidents", "show", "inc-nosuch")
	if n := strings.Count(r.err, "inc-nosuch"); n != 1 {
		t.Errorf("stderr = %q names the incident %d times, want once", r.err, n)
	}
	if !strings.Contains(r.err, "incident inc-nosuch not found") {
		t.Errorf("stderr = %q, want incident inc-nosuch not found", r.err)
	}
}
