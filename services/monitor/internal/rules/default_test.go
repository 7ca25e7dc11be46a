package rules

import (
	"fmt"
	"testing"
	"time"

	"github.com/nodexsec/nodex/services/monitor/internal/adapters"
	"github.com/nodexsec/nodex/services/monitor/internal/domain"
)

var t0 = time.Date(2026, 12, 4, 12, 0, 0, 0, time.UTC)

// serviceObs returns an event as a NodeX service publishes it: signed by the
// service, about identity subject.
func serviceObs(id, source, typ, status, severity, subject string,
	at time.Duration, meta map[string]string) *domain.Observation {
	return &domain.Observation{
		Event: domain.Event{
			ID: id, Type: typ, Time: t0.Add(at), Source: source, Status: status,
			Severity: severity, Subject: subject, Resource: "res-" + source, Metadata: meta,
		},
		Sender:     source,
		SenderKind: "service",
		Origin:     "connection:" + source,
		At:         t0.Add(at),
	}
}

func newEngine(t *testing.T) *domain.Engine {
	t.Helper()

	e, err := domain.NewEngine(Default())
	if err != nil {
		t.Fatalf("NewEngine(Default()): %v", err)
	}

	return e
}

// feed observes every observation and returns the threats raised, by id,
// keeping the highest revision.
func feed(e *domain.Engine, obs ...*domain.Observation) map[string]domain.Threat {
	out := make(map[string]domain.Threat)
	for _, o := range obs {
		due, _ := e.Observe(o)
		for _, th := range due {
			out[th.ID] = th
		}
	}

	return out
}

func only(t *testing.T, got map[string]domain.Threat) domain.Threat {
	t.Helper()

	if len(got) != 1 {
		t.Fatalf("got %d threats, want 1: %+v", len(got), got)
	}
	for _, th := range got {
		return th
	}

	return domain.Threat{}
}

func TestDefaultRulesParse(t *testing.T) {
	rs := Default()
	if len(rs) < 12 {
		t.Fatalf("got %d default rules, want >= 12", len(rs))
	}
}

func TestDefaultRules(t *testing.T) {
	denials := func(n int) []*domain.Observation {
		var obs []*domain.Observation
		for i := range n {
			obs = append(obs, serviceObs(fmt.Sprintf("d%d", i), "keyvault", "authz.decision",
				"failure", "medium", "agent-1", time.Duration(i)*time.Second,
				map[string]string{"action": "retrieve"}))
		}
		return obs
	}
	replays := func(n int) []*domain.Observation {
		var obs []*domain.Observation
		for i := range n {
			obs = append(obs, serviceObs(fmt.Sprintf("r%d", i), "policy", "envelope.rejected",
				"failure", "high", "", time.Duration(i)*time.Second,
				map[string]string{"reason": "replay", "origin": "client:42",
					"claimed_sender": "service:codesec"}))
		}
		return obs
	}
	retrievals := func(n int) []*domain.Observation {
		var obs []*domain.Observation
		for i := range n {
			obs = append(obs, serviceObs(fmt.Sprintf("k%d", i), "keyvault", "keyvault.retrieve",
				"success", "info", "agent-2", time.Duration(i)*time.Second, nil))
		}
		return obs
	}

	tests := []struct {
		name     string
		obs      []*domain.Observation
		rule     string
		threat   string
		identity string
		count    int
	}{
		{
			name: "denials reach threshold", obs: denials(5),
			rule: "authz-repeated-denials", threat: "UNAUTHORIZED_ACCESS",
			identity: "agent-1", count: 5,
		},
		{
			name: "revoked sender",
			obs: []*domain.Observation{serviceObs("e1", "codesec", "envelope.rejected",
				"failure", "high", "", 0, map[string]string{"reason": "revoked_sender",
					"origin": "client:7", "subject": "nodex.v1.codesec.submit"})},
			rule: "envelope-unknown-sender", threat: "SYSTEM_COMPROMISE", count: 1,
		},
		{
			name: "bad signature on service subject",
			obs: []*domain.Observation{serviceObs("e2", "keyvault", "envelope.rejected",
				"failure", "high", "", 0, map[string]string{"reason": "bad_signature",
					"origin": "client:9", "subject": "nodex.v1.keyvault.retrieve"})},
			rule: "envelope-bad-signature", threat: "SYSTEM_COMPROMISE", count: 1,
		},
		{
			name: "replay burst", obs: replays(5),
			rule: "envelope-replay-burst", threat: "SYSTEM_COMPROMISE", count: 5,
		},
		{
			name: "forged event on stream",
			obs: []*domain.Observation{serviceObs("m1", "monitor", "monitor.event_rejected",
				"failure", "high", "", 0, map[string]string{"reason": "bad_signature",
					"origin": "subject:nodex.v1.events.keyvault.keyvault_retrieve"})},
			rule: "event-forged", threat: "SYSTEM_COMPROMISE", count: 1,
		},
		{
			name: "stream event from revoked sender",
			obs: []*domain.Observation{serviceObs("m2", "monitor", "monitor.event_rejected",
				"failure", "high", "", 0, map[string]string{"reason": "revoked_sender",
					"origin": "connection:keyvault"})},
			rule: "event-unknown-sender", threat: "SYSTEM_COMPROMISE", count: 1,
		},
		{
			name: "critical finding",
			obs: []*domain.Observation{serviceObs("c1", "codesec", "codesec.finding",
				"failure", "critical", "agent-3", 0,
				map[string]string{"rule": "py-exec", "line": "3"})},
			rule: "codesec-critical-finding", threat: "CODE_INJECTION",
			identity: "agent-3", count: 1,
		},
		{
			name: "submission denied",
			obs: []*domain.Observation{serviceObs("c2", "codesec", "codesec.submission_denied",
				"failure", "high", "agent-3", 0, nil)},
			rule: "codesec-submission-denied", threat: "CODE_INJECTION",
			identity: "agent-3", count: 1,
		},
		{
			name: "seccomp kill",
			obs: []*domain.Observation{serviceObs("s1", "sandbox", "sandbox.violation",
				"failure", "high", "agent-4", 0, map[string]string{"kind": "seccomp"})},
			rule: "sandbox-violation", threat: "CODE_INJECTION", identity: "agent-4", count: 1,
		},
		{
			name: "denied import",
			obs: []*domain.Observation{serviceObs("s2", "sandbox", "sandbox.violation",
				"failure", "high", "agent-4", 0, map[string]string{"kind": "import"})},
			rule: "sandbox-violation", threat: "CODE_INJECTION", identity: "agent-4", count: 1,
		},
		{
			name: "secret redacted",
			obs: []*domain.Observation{serviceObs("s3", "sandbox", "sandbox.secret_redacted",
				"success", "high", "agent-5", 0, map[string]string{"pattern": "openai"})},
			rule: "sandbox-secret-redacted", threat: "DATA_BREACH", identity: "agent-5", count: 1,
		},
		{
			name: "retrievals above rate", obs: retrievals(30),
			rule: "keyvault-retrieve-rate", threat: "API_ABUSE", identity: "agent-2", count: 30,
		},
		{
			name: "quota exceeded",
			obs: []*domain.Observation{serviceObs("q1", "keyvault", "keyvault.quota_exceeded",
				"failure", "medium", "agent-6", 0, map[string]string{"provider": "openai"})},
			rule: "keyvault-limit-hit", threat: "API_ABUSE", identity: "agent-6", count: 1,
		},
		{
			name: "rate limited",
			obs: []*domain.Observation{serviceObs("q2", "keyvault", "keyvault.rate_limited",
				"failure", "medium", "agent-6", 0, nil)},
			rule: "keyvault-limit-hit", threat: "API_ABUSE", identity: "agent-6", count: 1,
		},
		{
			name: "retrieve refused by rate limit",
			obs: []*domain.Observation{serviceObs("q3", "keyvault", "keyvault.retrieve",
				"failure", "high", "agent-6", 0,
				map[string]string{"reason": "rate_limited", "threat_hint": "api_abuse"})},
			rule: "keyvault-retrieve-limited", threat: "API_ABUSE", identity: "agent-6", count: 1,
		},
		{
			name: "retrieve refused by quota",
			obs: []*domain.Observation{serviceObs("q4", "keyvault", "keyvault.retrieve",
				"failure", "high", "agent-6", 0, map[string]string{"reason": "quota_exceeded"})},
			rule: "keyvault-retrieve-limited", threat: "API_ABUSE", identity: "agent-6", count: 1,
		},
		{
			name: "source flood",
			obs: []*domain.Observation{serviceObs("f1", "monitor", "monitor.source_flood",
				"failure", "high", "", 0, map[string]string{"source": "codesec", "shed": "500"})},
			rule: "source-flood", threat: "API_ABUSE", count: 1,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			th := only(t, feed(newEngine(t), tt.obs...))
			if th.RuleID != tt.rule {
				t.Errorf("rule: got %q, want %q", th.RuleID, tt.rule)
			}
			if th.Type != tt.threat {
				t.Errorf("type: got %q, want %q", th.Type, tt.threat)
			}
			if th.Identity != tt.identity {
				t.Errorf("identity: got %q, want %q", th.Identity, tt.identity)
			}
			if th.Count != tt.count {
				t.Errorf("count: got %d, want %d", th.Count, tt.count)
			}
			if len(th.Evidence) != tt.count {
				t.Errorf("evidence: got %d ids, want %d", len(th.Evidence), tt.count)
			}
		})
	}
}

func TestDefaultRulesBelowThreshold(t *testing.T) {
	e := newEngine(t)
	var obs []*domain.Observation
	for i := range 4 {
		obs = append(obs, serviceObs(fmt.Sprintf("d%d", i), "keyvault", "authz.decision",
			"failure", "medium", "agent-1", time.Duration(i)*20*time.Second, nil))
	}
	// A fifth denial 61 s after the second falls outside the 60 s window of
	// the first two.
	obs = append(obs, serviceObs("d4", "keyvault", "authz.decision", "failure", "medium",
		"agent-1", 81*time.Second, nil))
	if got := feed(e, obs...); len(got) != 0 {
		t.Errorf("got %d threats for 5 denials spread over 81 s, want 0", len(got))
	}
}

func TestKeyReadThenOutbound(t *testing.T) {
	read := serviceObs("k1", "keyvault", "keyvault.retrieve", "success", "info", "agent-7",
		0, map[string]string{"provider": "openai"})
	egress := serviceObs("n1", "sandbox", "sandbox.violation", "failure", "high", "agent-7",
		2*time.Minute, map[string]string{"kind": "network", "run_id": "run-1"})

	got := feed(newEngine(t), read, egress)
	var breach *domain.Threat
	for _, th := range got {
		if th.RuleID == "key-read-then-outbound" {
			breach = &th
		}
	}
	if breach == nil {
		t.Fatalf("no key-read-then-outbound threat in %+v", got)
	}
	if breach.Type != domain.ThreatDataBreach {
		t.Errorf("type: got %q, want DATA_BREACH", breach.Type)
	}
	if breach.Identity != "agent-7" {
		t.Errorf("identity: got %q, want agent-7", breach.Identity)
	}
	if len(breach.Evidence) != 2 || breach.Evidence[0] != "k1" || breach.Evidence[1] != "n1" {
		t.Errorf("evidence: got %v, want [k1 n1]", breach.Evidence)
	}
}

func TestKeyReadThenOutboundTooLate(t *testing.T) {
	read := serviceObs("k1", "keyvault", "keyvault.retrieve", "success", "info", "agent-7",
		0, nil)
	egress := serviceObs("n1", "sandbox", "sandbox.violation", "failure", "high", "agent-7",
		11*time.Minute, map[string]string{"kind": "network"})
	for _, th := range feed(newEngine(t), read, egress) {
		if th.RuleID == "key-read-then-outbound" {
			t.Errorf("sequence fired for steps 11m apart, want within 10m only")
		}
	}
}

func TestKeyReadThenOutboundOtherIdentity(t *testing.T) {
	read := serviceObs("k1", "keyvault", "keyvault.retrieve", "success", "info", "agent-7",
		0, nil)
	egress := serviceObs("n1", "sandbox", "sandbox.violation", "failure", "high", "agent-8",
		time.Minute, map[string]string{"kind": "network"})
	for _, th := range feed(newEngine(t), read, egress) {
		if th.RuleID == "key-read-then-outbound" {
			t.Errorf("sequence fired across identities agent-7 and agent-8")
		}
	}
}

func TestParseRejects(t *testing.T) {
	tests := []struct {
		name string
		yaml string
	}{
		{"unknown key", "version: 1\nrules:\n  - id: a\n    colour: red\n"},
		{"wrong version", "version: 2\nrules: []\n"},
		{"bad threat", "version: 1\nrules:\n  - {id: a, kind: single, threat: BAD, " +
			"severity: high, match: {type: x}}\n"},
		{"bad kind", "version: 1\nrules:\n  - {id: a, kind: any, threat: API_ABUSE, " +
			"severity: high, match: {type: x}}\n"},
		{"unknown field", "version: 1\nrules:\n  - {id: a, kind: single, threat: API_ABUSE, " +
			"severity: high, match: {colour: x}}\n"},
		{"threshold without window", "version: 1\nrules:\n  - {id: a, kind: threshold, " +
			"threat: API_ABUSE, severity: high, threshold: 3, match: {type: x}}\n"},
		{"bad duration", "version: 1\nrules:\n  - {id: a, kind: threshold, " +
			"threat: API_ABUSE, severity: high, threshold: 3, window: 5 parsecs, " +
			"match: {type: x}}\n"},
		{"duplicate id", "version: 1\nrules:\n" +
			"  - {id: a, kind: single, threat: API_ABUSE, severity: high, match: {type: x}}\n" +
			"  - {id: a, kind: single, threat: API_ABUSE, severity: high, match: {type: y}}\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := Parse([]byte(tt.yaml)); err == nil {
				t.Errorf("Parse accepted %q, want an error", tt.yaml)
			}
		})
	}
}

// TestEveryRejectionRaisesOneThreat checks that each reason a stream event
// can be rejected for, including the plain-JSON opener's "undecodable",
// raises exactly one threat.
func TestEveryRejectionRaisesOneThreat(t *testing.T) {
	for _, reason := range append(adapters.RejectionReasonNames(), "undecodable") {
		o := serviceObs("r-"+reason, "monitor", "monitor.event_rejected", "failure", "high",
			"", 0, map[string]string{"reason": reason, "origin": "connection:keyvault"})
		if got := feed(newEngine(t), o); len(got) != 1 {
			t.Errorf("reason %s: got %d threats, want 1", reason, len(got))
		}
	}
}
