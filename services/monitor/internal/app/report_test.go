package app_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/nodexsec/nodex/libs/events"
	"github.com/nodexsec/nodex/libs/testkit"
	"github.com/nodexsec/nodex/services/monitor/internal/adapters"
	"github.com/nodexsec/nodex/services/monitor/internal/app"
	"github.com/nodexsec/nodex/services/monitor/internal/domain"
	"github.com/nodexsec/nodex/services/monitor/internal/rules"
)

// signerOpener decodes plain JSON events and reports signer as their
// authenticated sender, as the envelope opener does for a sealed event.
type signerOpener struct{ signer, kind string }

func (o signerOpener) Open(ctx context.Context, msg *app.Message) (app.Opened, error) {
	out, err := adapters.PlainOpener{}.Open(ctx, msg)
	out.Sender, out.SenderKind = o.signer, o.kind

	return out, err
}

// reportRules raise a threat on any single agent report, grouped by
// identity, the broadest rule an operator could write for them.
const reportRules = `version: 1
rules:
  - id: agent-report
    kind: single
    threat: SYSTEM_COMPROMISE
    severity: critical
    match: {type: "agent.*"}
    group_by: [identity]
`

func reportDetector(t *testing.T, signer, kind string, opts ...app.DetectorOptions,
) (*app.Detector, *memorySink, *countingMetrics) {
	t.Helper()
	ctx := context.Background()
	js := testkit.JetStream(t, testkit.NATSServer(t))
	seen, err := adapters.NewKVSeenStore(ctx, js, time.Hour, 1)
	if err != nil {
		t.Fatal(err)
	}
	open, err := adapters.NewKVThreatStore(ctx, js, time.Hour, 1)
	if err != nil {
		t.Fatal(err)
	}
	ruleSet, err := rules.Parse([]byte(reportRules))
	if err != nil {
		t.Fatal(err)
	}
	sink, metrics := &memorySink{}, &countingMetrics{}
	var o app.DetectorOptions
	if len(opts) > 0 {
		o = opts[0]
	}
	o.Self = "monitor"
	det, err := app.NewDetector(slog.New(slog.DiscardHandler), ruleSet,
		signerOpener{signer: signer, kind: kind}, sink, seen, open, metrics, o)
	if err != nil {
		t.Fatal(err)
	}

	return det, sink, metrics
}

// reportMessage stores ev as the monitor stores a report: under its own
// emitter token.
func reportMessage(t *testing.T, ev events.SecurityEvent, emitter string) *app.Message {
	t.Helper()
	subject, err := events.Subject(emitter, ev.Type)
	if err != nil {
		t.Fatal(err)
	}
	data, err := json.Marshal(ev)
	if err != nil {
		t.Fatal(err)
	}

	return &app.Message{Subject: subject, Data: data, Stored: ev.Time, Delivered: 1}
}

func TestReportedEventNamesOnlyReporter(t *testing.T) {
	det, sink, _ := reportDetector(t, "monitor", "service")
	ev, err := app.BuildReportEvent("agent-a", app.Report{Type: "suspicious_input",
		Resource: "bundle:someone-elses-bundle", Severity: "critical"}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if err := det.Process(context.Background(), reportMessage(t, ev, "monitor")); err != nil {
		t.Fatalf("Process: %v", err)
	}

	if len(sink.threats) != 1 {
		t.Fatalf("got %d threats, want 1", len(sink.threats))
	}
	th := sink.threats[0]
	if th.Identity != "agent-a" {
		t.Errorf("threat identity = %q, want the reporter agent-a", th.Identity)
	}
	if len(th.Resources) != 0 {
		t.Errorf("threat resources = %v, want none: an agent may name anyone's bundle",
			th.Resources)
	}
	if th.Origin != "connection:agent_a" {
		t.Errorf("threat origin = %q, want the reporter's connection:agent_a", th.Origin)
	}
}

// Reports that many agents send, each within its own rate at the relay,
// all arrive under the monitor's emitter token. They must not be shed as
// the monitor's flood, while the monitor's own events still are.
func TestRelayedReportsNotShedAsMonitorFlood(t *testing.T) {
	det, _, metrics := reportDetector(t, "monitor", "service",
		app.DetectorOptions{FloodRatePerSecond: 1, FloodBurst: 5})
	ctx := context.Background()
	start := time.Now()
	for i := range 50 {
		ev, err := app.BuildReportEvent(fmt.Sprintf("agent-%d", i), app.Report{Type: "note"},
			start)
		if err != nil {
			t.Fatal(err)
		}
		if err := det.Process(ctx, reportMessage(t, ev, "monitor")); err != nil {
			t.Fatalf("Process: %v", err)
		}
	}
	if metrics.shed != 0 || metrics.events != 50 {
		t.Errorf("50 relayed reports: %d shed, %d processed; want 0 and 50",
			metrics.shed, metrics.events)
	}
	for range 10 {
		ev := events.SecurityEvent{ID: uuid.NewString(), Time: start,
			Type: "monitor.rules_reloaded", Source: "monitor", Status: "success",
			Severity: "info"}
		if err := det.Process(ctx, reportMessage(t, ev, "monitor")); err != nil {
			t.Fatalf("Process: %v", err)
		}
	}
	if metrics.shed != 5 {
		t.Errorf("10 of the monitor's own events past burst 5: %d shed, want 5", metrics.shed)
	}
}

// A report rejected at the relay for its rate is a flood of that reporter:
// the source_flood event names the agent, not the monitor.
func TestRejectedReportsFloodNamesReporter(t *testing.T) {
	f := newFixture(t, app.DetectorOptions{FloodReportInterval: time.Second})
	now := time.Unix(1_700_000_000, 0)
	rep := app.NewReporter(&memoryReportSink{}, 1, 2, func() time.Time { return now })
	rep.OnShed(f.det.ShedReport)
	ctx := context.Background()

	rejected := 0
	for range 12 {
		_, err := rep.Report(ctx, "agent-a", "agent", 0, app.Report{Type: "note"})
		if errors.Is(err, app.ErrReportRateLimited) {
			rejected++
		}
	}
	if rejected != 10 || f.metrics.shed != 10 {
		t.Fatalf("rejected %d reports and counted %d shed, want 10 and 10", rejected,
			f.metrics.shed)
	}

	if err := f.det.Flush(ctx, now.Add(time.Second)); err != nil {
		t.Fatalf("Flush: %v", err)
	}

	var found bool
	for _, th := range f.sink.threats {
		if th.RuleID != "source-flood" {
			continue
		}
		found = true
		if th.Group != `metadata.source="agent_a"` || th.Origin != "connection:agent_a" {
			t.Errorf("flood threat group %s origin %q, want agent_a for both", th.Group,
				th.Origin)
		}
	}
	if !found {
		t.Fatalf("no source-flood threat after 10 rejected reports; threats: %v", f.sink.threats)
	}
}

func TestReportedEventRejectedUnlessMonitorSigned(t *testing.T) {
	tests := []struct {
		name, signer, emitter string
		mutate                func(*events.SecurityEvent)
	}{
		{name: "signed by the agent", signer: "agent-a", emitter: "monitor"},
		{name: "signed by a service", signer: "codesec", emitter: "codesec"},
		{name: "subject not the reporter", signer: "monitor", emitter: "monitor",
			mutate: func(ev *events.SecurityEvent) { ev.Subject = "operator" }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			det, sink, metrics := reportDetector(t, tt.signer, "service")
			ev, err := app.BuildReportEvent("agent-a", app.Report{Type: "note"}, time.Now())
			if err != nil {
				t.Fatal(err)
			}
			if tt.mutate != nil {
				tt.mutate(&ev)
			}
			if err := det.Process(context.Background(), reportMessage(t, ev, tt.emitter)); err != nil {
				t.Fatalf("Process: %v", err)
			}
			for _, th := range sink.threats {
				if th.RuleID == "agent-report" {
					t.Errorf("forged report raised threat %s about %q", th.ID, th.Identity)
				}
			}
			if metrics.rejected != 1 {
				t.Errorf("rejected %d messages, want 1", metrics.rejected)
			}
		})
	}
}

// memoryReportSink records reported events.
type memoryReportSink struct {
	mu  sync.Mutex
	evs []events.SecurityEvent
}

func (s *memoryReportSink) PublishReportedSync(_ context.Context, ev events.SecurityEvent) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.evs = append(s.evs, ev)

	return nil
}

func TestReporterChecksReports(t *testing.T) {
	long := string(make([]byte, app.MaxReportFieldBytes+1))
	tests := []struct {
		name string
		kind string
		body int
		r    app.Report
		want error
	}{
		{name: "valid", kind: "agent", r: app.Report{Type: "note"}},
		{name: "namespaced type", kind: "agent", r: app.Report{Type: "agent.note"}},
		{name: "other namespace", kind: "agent", r: app.Report{Type: "codesec.finding"},
			want: app.ErrReportInvalid},
		{name: "empty type", kind: "agent", want: app.ErrReportInvalid},
		{name: "long action", kind: "agent", r: app.Report{Type: "note", Action: long},
			want: app.ErrReportInvalid},
		{name: "bad status", kind: "agent", r: app.Report{Type: "note", Status: "ok"},
			want: app.ErrReportInvalid},
		{name: "bad severity", kind: "agent", r: app.Report{Type: "note", Severity: "max"},
			want: app.ErrReportInvalid},
		{name: "bad metadata key", kind: "agent",
			r:    app.Report{Type: "note", Metadata: map[string]string{"Key\n": "v"}},
			want: app.ErrReportInvalid},
		{name: "large body", kind: "agent", body: app.MaxReportBodyBytes + 1,
			r: app.Report{Type: "note"}, want: app.ErrReportInvalid},
		{name: "service", kind: "service", r: app.Report{Type: "note"},
			want: app.ErrReportNotAgent},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sink := &memoryReportSink{}
			rep := app.NewReporter(sink, 1, 10, nil)
			reply, err := rep.Report(context.Background(), "agent-a", tt.kind, tt.body, tt.r)
			if !errors.Is(err, tt.want) {
				t.Fatalf("Report: got %v, want %v", err, tt.want)
			}
			if tt.want != nil {
				if len(sink.evs) != 0 {
					t.Errorf("rejected report stored %d events", len(sink.evs))
				}
				return
			}
			if len(sink.evs) != 1 || sink.evs[0].ID != reply.ID {
				t.Fatalf("stored %v, want one event with id %s", sink.evs, reply.ID)
			}
			if ev := sink.evs[0]; ev.Source != "agent-a" || ev.Subject != "agent-a" ||
				ev.Type != "agent.note" {
				t.Errorf("stored source %q subject %q type %q, want agent-a, agent-a, agent.note",
					ev.Source, ev.Subject, ev.Type)
			}
		})
	}
}

func TestReporterRateLimitsPerAgent(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	clock := func() time.Time { return now }
	sink := &memoryReportSink{}
	rep := app.NewReporter(sink, 2, 5, clock)
	ctx := context.Background()
	report := func(id string) error {
		_, err := rep.Report(ctx, id, "agent", 0, app.Report{Type: "note"})
		return err
	}

	for i := range 5 {
		if err := report("agent-a"); err != nil {
			t.Fatalf("report %d within the burst: %v", i, err)
		}
	}
	if err := report("agent-a"); !errors.Is(err, app.ErrReportRateLimited) {
		t.Fatalf("report past the burst: got %v, want ErrReportRateLimited", err)
	}
	if err := report("agent-b"); err != nil {
		t.Errorf("another agent's report: %v", err)
	}
	now = now.Add(time.Second)
	for i := range 2 {
		if err := report("agent-a"); err != nil {
			t.Errorf("report %d after one second of refill: %v", i, err)
		}
	}
	if err := report("agent-a"); !errors.Is(err, app.ErrReportRateLimited) {
		t.Errorf("third report after one second: got %v, want ErrReportRateLimited", err)
	}
	if got := len(sink.evs); got != 8 {
		t.Errorf("stored %d events, want 8", got)
	}
}

// TestReportMatchesSchema checks Report's JSON keys and limits against
// schemas/monitor/report-request.schema.json.
func TestReportMatchesSchema(t *testing.T) {
	raw, err := os.ReadFile("../../../../schemas/monitor/report-request.schema.json")
	if err != nil {
		t.Fatalf("reading report schema: %v", err)
	}
	var schema struct {
		Properties map[string]struct {
			MaxLength            int `json:"maxLength"`
			MaxProperties        int `json:"maxProperties"`
			AdditionalProperties struct {
				MaxLength int `json:"maxLength"`
			} `json:"additionalProperties"`
		} `json:"properties"`
	}
	if err := json.Unmarshal(raw, &schema); err != nil {
		t.Fatalf("decoding report schema: %v", err)
	}
	data, err := json.Marshal(app.Report{Type: "t", Action: "a", Resource: "r", Status: "s",
		Severity: "v", Metadata: map[string]string{"k": "v"}})
	if err != nil {
		t.Fatal(err)
	}
	var keys map[string]any
	if err := json.Unmarshal(data, &keys); err != nil {
		t.Fatal(err)
	}
	if len(keys) != len(schema.Properties) {
		t.Errorf("Report has %d keys, schema %d properties", len(keys), len(schema.Properties))
	}
	for key := range keys {
		if _, ok := schema.Properties[key]; !ok {
			t.Errorf("report key %q is not in the schema", key)
		}
	}
	for _, field := range []string{"action", "resource"} {
		if got := schema.Properties[field].MaxLength; got != app.MaxReportFieldBytes {
			t.Errorf("schema %s maxLength %d, want %d", field, got, app.MaxReportFieldBytes)
		}
	}
	meta := schema.Properties["metadata"]
	if meta.MaxProperties != app.MaxReportMetadataEntries ||
		meta.AdditionalProperties.MaxLength != app.MaxReportMetadataValue {
		t.Errorf("schema metadata limits %d entries of %d bytes, want %d of %d",
			meta.MaxProperties, meta.AdditionalProperties.MaxLength,
			app.MaxReportMetadataEntries, app.MaxReportMetadataValue)
	}
}

// blockingSink holds every threat publish until release is closed, as a
// threat stream that is slow to acknowledge would.
type blockingSink struct{ entered, release chan struct{} }

func (s *blockingSink) PublishThreat(context.Context, domain.Threat) error {
	select {
	case s.entered <- struct{}{}:
	default:
	}
	<-s.release

	return nil
}

// A report rejected for its rate is counted without waiting for the
// detector, which holds its lock across stream writes: otherwise one
// flooding agent would hold every report handler slot.
func TestRejectedReportDoesNotWaitForDetector(t *testing.T) {
	ctx := context.Background()
	js := testkit.JetStream(t, testkit.NATSServer(t))
	seen, err := adapters.NewKVSeenStore(ctx, js, time.Hour, 1)
	if err != nil {
		t.Fatal(err)
	}
	open, err := adapters.NewKVThreatStore(ctx, js, time.Hour, 1)
	if err != nil {
		t.Fatal(err)
	}
	sink := &blockingSink{entered: make(chan struct{}, 1), release: make(chan struct{})}
	det, err := app.NewDetector(slog.New(slog.DiscardHandler), rules.Default(),
		adapters.PlainOpener{TrustSource: true}, sink, seen, open, &countingMetrics{},
		app.DetectorOptions{Self: "monitor"})
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = det.Process(ctx, message(t, finding("agent-1"), time.Now())) }()
	<-sink.entered
	defer close(sink.release)

	rep := app.NewReporter(&memoryReportSink{}, 1, 1, nil)
	rep.OnShed(det.ShedReport)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for range 3 {
			_, _ = rep.Report(ctx, "agent-a", "agent", 0, app.Report{Type: "note"})
		}
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("reports rejected for rate waited for the detector's threat publish")
	}
}
