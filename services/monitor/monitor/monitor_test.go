package monitor

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/nodexsec/nodex/libs/events"
	"github.com/nodexsec/nodex/libs/testkit"
)

// syncBuffer is a log sink that tests read while the monitor writes.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()

	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()

	return b.buf.String()
}

type running struct {
	js          jetstream.JetStream
	logs        *syncBuffer
	metricsAddr string
	reload      chan struct{}
	stop        func()
}

// start runs the monitor on srv in plain-event mode until stop or the end
// of the test.
func start(t *testing.T, srv *server.Server, cfg Config) *running {
	t.Helper()

	js := testkit.JetStream(t, srv)
	cfg.InsecurePlainEvents = true
	if cfg.MetricsAddr == "" {
		cfg.MetricsAddr = "127.0.0.1:0"
	}
	r := &running{js: js, logs: &syncBuffer{}, reload: make(chan struct{})}
	ready := make(chan string, 1)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- Run(ctx, cfg, Deps{
			Log:    slog.New(slog.NewTextHandler(r.logs, nil)),
			JS:     js,
			Reload: r.reload,
			Ready:  func(addr string) { ready <- addr },
		})
	}()

	select {
	case r.metricsAddr = <-ready:
	case err := <-done:
		cancel()
		t.Fatalf("Run returned before ready: %v", err)
	case <-time.After(10 * time.Second):
		cancel()
		t.Fatal("monitor not ready after 10s")
	}
	var once sync.Once
	r.stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("Run: %v", err)
			}
		})
	}
	t.Cleanup(r.stop)

	return r
}

// publish stores ev as a service would (plain JSON in this mode) and
// returns its id.
func publish(t *testing.T, js jetstream.JetStream, ev events.SecurityEvent) string {
	t.Helper()

	if ev.ID == "" {
		ev.ID = uuid.NewString()
	}
	if ev.Time.IsZero() {
		ev.Time = time.Now().UTC()
	}
	subject, err := events.Subject(ev.Source, ev.Type)
	if err != nil {
		t.Fatalf("event subject: %v", err)
	}
	data, err := json.Marshal(ev)
	if err != nil {
		t.Fatalf("encoding event: %v", err)
	}
	publishRaw(t, js, subject, ev.ID, data)

	return ev.ID
}

func publishRaw(t *testing.T, js jetstream.JetStream, subject, msgID string, data []byte) {
	t.Helper()

	msg := nats.NewMsg(subject)
	msg.Data = data
	msg.Header.Set(jetstream.MsgIDHeader, msgID)
	if _, err := js.PublishMsg(context.Background(), msg); err != nil {
		t.Fatalf("publishing on %s: %v", subject, err)
	}
}

func denial(identity string) events.SecurityEvent {
	return events.SecurityEvent{
		Type: "authz.decision", Source: "keyvault", Action: "retrieve",
		Resource: "key/openai", Subject: identity, Status: "failure", Severity: "medium",
		Metadata: map[string]string{"decision_id": "d-1", "reason": "no permission"},
	}
}

// waitThreats polls NODEX_THREATS until cond holds for the listed threats.
func waitThreats(t *testing.T, js jetstream.JetStream, f ThreatFilter,
	cond func([]Threat) bool) []Threat {
	t.Helper()

	var got []Threat
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		var err error
		got, err = Reader{JS: js}.ListThreats(context.Background(), f)
		if err != nil {
			t.Fatalf("ListThreats: %v", err)
		}
		if cond(got) {
			return got
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("threats did not reach the expected state in 20s, last: %+v", got)

	return nil
}

func scrape(t *testing.T, addr string) string {
	t.Helper()

	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatalf("scraping metrics: %v", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("reading metrics: %v", err)
	}

	return string(body)
}

// hasMetric reports whether the Prometheus text has a sample of name with
// the given label pair.
func hasMetric(metrics, name, label string) bool {
	for line := range strings.SplitSeq(metrics, "\n") {
		if strings.HasPrefix(line, name+"{") && strings.Contains(line, label) {
			return true
		}
	}

	return false
}

// waitMetric scrapes addr until a sample of name with label appears. The
// monitor stores a threat before it counts it, so a test that saw the
// threat may scrape a moment early.
func waitMetric(t *testing.T, addr, name, label string) bool {
	t.Helper()

	deadline := time.Now().Add(5 * time.Second)
	for {
		if hasMetric(scrape(t, addr), name, label) {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestRunRaisesThreat(t *testing.T) {
	srv := testkit.NATSServer(t)
	m := start(t, srv, Config{})

	var ids []string
	for range 5 {
		ids = append(ids, publish(t, m.js, denial("agent-1")))
	}

	got := waitThreats(t, m.js, ThreatFilter{Type: "UNAUTHORIZED_ACCESS"},
		func(ts []Threat) bool { return len(ts) == 1 })
	th := got[0]
	if th.Identity != "agent-1" {
		t.Errorf("identity: got %q, want agent-1", th.Identity)
	}
	if th.RuleID != "authz-repeated-denials" {
		t.Errorf("rule: got %q, want authz-repeated-denials", th.RuleID)
	}
	if strings.Join(th.Evidence, ",") != strings.Join(ids, ",") {
		t.Errorf("evidence: got %v, want %v", th.Evidence, ids)
	}
	if len(th.Resources) != 1 || th.Resources[0] != "key/openai" {
		t.Errorf("resources: got %v, want [key/openai]", th.Resources)
	}

	for _, want := range []struct{ name, label string }{
		{"nodex_monitor_events_total", `event_type="authz.decision"`},
		{"nodex_monitor_decisions_total", `outcome="failure"`},
		{"nodex_monitor_threats_total", `threat_type="UNAUTHORIZED_ACCESS"`},
		{"nodex_monitor_ingest_lag_seconds_bucket", `le="+Inf"`},
	} {
		if !waitMetric(t, m.metricsAddr, want.name, want.label) {
			t.Errorf("metrics lack %s with %s", want.name, want.label)
		}
	}
}

func TestOneAttackOneThreat(t *testing.T) {
	srv := testkit.NATSServer(t)
	m := start(t, srv, Config{})

	for range 200 {
		publish(t, m.js, denial("agent-1"))
	}
	got := waitThreats(t, m.js, ThreatFilter{}, func(ts []Threat) bool {
		return len(ts) == 1 && ts[0].Count == 200
	})
	if got[0].Revision > 10 {
		t.Errorf("revisions: got %d for 200 events, want about log2(200)", got[0].Revision)
	}
}

func TestRestartKeepsThreat(t *testing.T) {
	dir := t.TempDir()
	srv := testkit.NATSServerAt(t, dir)
	m := start(t, srv, Config{})
	for range 5 {
		publish(t, m.js, denial("agent-1"))
	}
	first := waitThreats(t, m.js, ThreatFilter{}, func(ts []Threat) bool { return len(ts) == 1 })
	m.stop()

	m = start(t, srv, Config{})
	for range 3 {
		publish(t, m.js, denial("agent-1"))
	}
	got := waitThreats(t, m.js, ThreatFilter{}, func(ts []Threat) bool {
		return len(ts) == 1 && ts[0].Count == 8
	})
	if got[0].ID != first[0].ID {
		t.Errorf("after restart: threat %s, want %s updated", got[0].ID, first[0].ID)
	}
}

func TestRestartKeepsWindows(t *testing.T) {
	srv := testkit.NATSServerAt(t, t.TempDir())
	m := start(t, srv, Config{})
	for range 3 {
		publish(t, m.js, denial("agent-1"))
	}
	waitDetectAcked(t, m.js, 3)
	m.stop()

	// Two more denials after the restart complete the five of the window.
	m = start(t, srv, Config{})
	for range 2 {
		publish(t, m.js, denial("agent-1"))
	}
	got := waitThreats(t, m.js, ThreatFilter{}, func(ts []Threat) bool { return len(ts) == 1 })
	if got[0].Count != 5 || len(got[0].Evidence) != 5 {
		t.Errorf("threat: count %d with %d evidence ids, want 5 and 5",
			got[0].Count, len(got[0].Evidence))
	}
	if !strings.Contains(m.logs.String(), `msg="windows rebuilt" service=monitor `+
		`component=consumer events=3`) {
		t.Errorf("log lacks the rebuilt windows:\n%s", m.logs.String())
	}
}

// waitDetectAcked waits until monitor-detect has acked the first n events.
func waitDetectAcked(t *testing.T, js jetstream.JetStream, n uint64) {
	t.Helper()

	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		c, err := js.Consumer(context.Background(), events.StreamName, ConsumerName)
		if err == nil {
			info, err := c.Info(context.Background())
			if err == nil && info.AckFloor.Stream >= n {
				return
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("monitor-detect did not ack %d events in 10s", n)
}

func TestForgedEventNamesSubject(t *testing.T) {
	srv := testkit.NATSServer(t)
	m := start(t, srv, Config{})

	// An event on keyvault's subject that claims to come from codesec, and
	// one that is not JSON at all.
	ev := denial("service:policy")
	ev.ID, ev.Time, ev.Source = uuid.NewString(), time.Now().UTC(), "codesec"
	data, _ := json.Marshal(ev)
	const subject = "nodex.v1.events.keyvault.authz.decision"
	publishRaw(t, m.js, subject, ev.ID, data)
	publishRaw(t, m.js, "nodex.v1.events.sandbox.sandbox.violation", uuid.NewString(),
		[]byte("{not json"))

	got := waitThreats(t, m.js, ThreatFilter{Type: "SYSTEM_COMPROMISE"},
		func(ts []Threat) bool { return len(ts) == 2 })
	for _, th := range got {
		if th.RuleID != "event-forged" {
			t.Errorf("rule: got %q, want event-forged", th.RuleID)
		}
		if th.Identity != "" {
			t.Errorf("identity: got %q, want none for a forged event", th.Identity)
		}
		if strings.Contains(th.Origin+th.Group, "policy") ||
			strings.Contains(th.Origin+th.Group, "codesec") {
			t.Errorf("threat names a claimed identity: origin %q group %q", th.Origin, th.Group)
		}
		if th.Origin != "connection:keyvault" && th.Origin != "connection:sandbox" {
			t.Errorf("origin: got %q, want the connection of the delivery subject", th.Origin)
		}
	}
	if !waitMetric(t, m.metricsAddr, "nodex_monitor_rejected_total", `reason="schema"`) {
		t.Error("metrics lack the schema rejection")
	}
}

func TestFloodShedAndReported(t *testing.T) {
	srv := testkit.NATSServer(t)
	m := start(t, srv, Config{FloodRatePerSecond: 10, FloodBurst: 20})

	for range 300 {
		publish(t, m.js, events.SecurityEvent{Type: "keyvault.list", Source: "codesec",
			Status: "success", Severity: "info"})
	}

	got := waitThreats(t, m.js, ThreatFilter{Type: "API_ABUSE"},
		func(ts []Threat) bool { return len(ts) == 1 })
	if got[0].RuleID != "source-flood" {
		t.Errorf("rule: got %q, want source-flood", got[0].RuleID)
	}
	if !strings.Contains(got[0].Group, `"codesec"`) {
		t.Errorf("group: got %q, want the flooding source codesec", got[0].Group)
	}
	if !waitMetric(t, m.metricsAddr, "nodex_monitor_shed_total", `source="codesec"`) {
		t.Error("metrics lack shed counts for codesec")
	}
	if !strings.Contains(m.logs.String(), "events shed from flooding source") {
		t.Error("log lacks the shed report")
	}
}

func TestLogInjectionEscaped(t *testing.T) {
	srv := testkit.NATSServer(t)
	m := start(t, srv, Config{})

	ev := events.SecurityEvent{Type: "codesec.finding", Source: "codesec",
		Subject: "agent-9\nlevel=ERROR msg=\"forged line\"", Status: "failure",
		Severity: "critical", Resource: "bundle/1\r\nlevel=ERROR msg=forged"}
	publish(t, m.js, ev)

	got := waitThreats(t, m.js, ThreatFilter{}, func(ts []Threat) bool { return len(ts) == 1 })
	if strings.ContainsAny(got[0].Resources[0], "\r\n") {
		t.Errorf("threat resource %q keeps control characters", got[0].Resources[0])
	}
	for line := range strings.SplitSeq(m.logs.String(), "\n") {
		if strings.HasPrefix(line, "level=ERROR msg=") {
			t.Errorf("log has a forged line: %q", line)
		}
	}
}

func TestRulesReload(t *testing.T) {
	srv := testkit.NATSServer(t)
	path := filepath.Join(t.TempDir(), "rules.yaml")
	write := func(typ string) {
		rule := "version: 1\nrules:\n  - {id: probe, kind: single, threat: API_ABUSE, " +
			"severity: low, match: {type: " + typ + "}}\n"
		if err := os.WriteFile(path, []byte(rule), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("keyvault.list")
	m := start(t, srv, Config{RulesFile: path, ReloadInterval: time.Hour})

	write("keyvault.store")
	m.reload <- struct{}{}
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(m.logs.String(), "rules reloaded") && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}

	publish(t, m.js, events.SecurityEvent{Type: "keyvault.list", Source: "keyvault",
		Subject: "agent-1", Status: "success", Severity: "info"})
	publish(t, m.js, events.SecurityEvent{Type: "keyvault.store", Source: "keyvault",
		Subject: "agent-2", Status: "success", Severity: "info"})

	waitThreats(t, m.js, ThreatFilter{}, func(ts []Threat) bool { return len(ts) >= 1 })
	time.Sleep(200 * time.Millisecond)
	got := waitThreats(t, m.js, ThreatFilter{}, func(ts []Threat) bool { return len(ts) >= 1 })
	if len(got) != 1 || got[0].Identity != "agent-2" {
		t.Errorf("threats after reload: got %+v, want one for agent-2 (keyvault.store)", got)
	}
}

func TestRulesReloadKeepsRulesOnError(t *testing.T) {
	srv := testkit.NATSServer(t)
	path := filepath.Join(t.TempDir(), "rules.yaml")
	rule := "version: 1\nrules:\n  - {id: probe, kind: single, threat: API_ABUSE, " +
		"severity: low, match: {type: keyvault.list}}\n"
	if err := os.WriteFile(path, []byte(rule), 0o600); err != nil {
		t.Fatal(err)
	}
	m := start(t, srv, Config{RulesFile: path, ReloadInterval: time.Hour})

	if err := os.WriteFile(path, []byte("version: 1\nrules: [{id: BAD}]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	m.reload <- struct{}{}
	publish(t, m.js, events.SecurityEvent{Type: "keyvault.list", Source: "keyvault",
		Subject: "agent-1", Status: "success", Severity: "info"})

	waitThreats(t, m.js, ThreatFilter{}, func(ts []Threat) bool { return len(ts) == 1 })
	if !strings.Contains(m.logs.String(), "rules not reloaded") {
		t.Error("log lacks the rejected reload")
	}
}

func TestTailEvents(t *testing.T) {
	srv := testkit.NATSServer(t)
	js := testkit.JetStream(t, srv)
	if _, err := events.EnsureStream(context.Background(), js, events.StreamOptions{}); err != nil {
		t.Fatal(err)
	}
	publish(t, js, denial("agent-1"))
	publish(t, js, denial("agent-2"))
	publish(t, js, events.SecurityEvent{Type: "keyvault.retrieve", Source: "keyvault",
		Subject: "agent-1", Status: "success", Severity: "info"})

	tests := []struct {
		name string
		f    EventFilter
		want int
	}{
		{"all", EventFilter{}, 3},
		{"by type", EventFilter{Type: "authz.decision"}, 2},
		{"by identity", EventFilter{Identity: "agent-1"}, 2},
		{"by type and identity", EventFilter{Type: "authz.decision", Identity: "agent-2"}, 1},
		{"limit", EventFilter{Limit: 1}, 1},
		{"since future", EventFilter{Since: time.Now().Add(time.Hour)}, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Reader{JS: js}.TailEvents(context.Background(), tt.f)
			if err != nil {
				t.Fatalf("TailEvents: %v", err)
			}
			if len(got) != tt.want {
				t.Errorf("got %d events, want %d", len(got), tt.want)
			}
		})
	}
	if _, err := (Reader{JS: js}).TailEvents(context.Background(),
		EventFilter{Type: "bad type"}); err == nil {
		t.Error("TailEvents accepted type filter \"bad type\"")
	}
}

func TestFollowEvents(t *testing.T) {
	srv := testkit.NATSServer(t)
	js := testkit.JetStream(t, srv)
	if _, err := events.EnsureStream(context.Background(), js, events.StreamOptions{}); err != nil {
		t.Fatal(err)
	}
	publish(t, js, denial("agent-2")) // stored before since: not delivered
	time.Sleep(10 * time.Millisecond)
	since := time.Now()

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	got := make(chan Event, 10)
	done := make(chan error, 1)
	go func() {
		done <- Reader{JS: js}.FollowEvents(ctx, EventFilter{Identity: "agent-2", Since: since},
			func(ev Event) error {
				got <- ev
				return nil
			})
	}()
	publish(t, js, denial("agent-1"))
	want := publish(t, js, denial("agent-2"))

	select {
	case ev := <-got:
		if ev.ID != want {
			t.Errorf("followed event %s, want %s about agent-2", ev.ID, want)
		}
	case <-ctx.Done():
		t.Fatal("no event followed in 10s")
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("FollowEvents: %v", err)
	}
	if len(got) != 0 {
		t.Errorf("followed %d more events, want only agent-2's", len(got))
	}
}
