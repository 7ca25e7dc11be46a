package app_test

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
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

// memorySink records published threats. While down is set, it fails
// every publish as an unavailable stream would.
type memorySink struct {
	mu      sync.Mutex
	down    bool
	threats []domain.Threat
}

func (s *memorySink) PublishThreat(_ context.Context, t domain.Threat) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.down {
		return errors.New("stream unavailable")
	}
	s.threats = append(s.threats, t)

	return nil
}

// countingMetrics counts calls; it is a real implementation of the port.
type countingMetrics struct {
	mu                                 sync.Mutex
	events, rejected, shed, duplicates int
}

func (m *countingMetrics) Event(string, string) { m.mu.Lock(); m.events++; m.mu.Unlock() }
func (m *countingMetrics) Decision(string)      {}
func (m *countingMetrics) Rejected(string)      { m.mu.Lock(); m.rejected++; m.mu.Unlock() }
func (m *countingMetrics) Threat(string)        {}
func (m *countingMetrics) Lag(time.Duration)    {}
func (m *countingMetrics) Shed(_ string, n int) { m.mu.Lock(); m.shed += n; m.mu.Unlock() }
func (m *countingMetrics) Duplicate()           { m.mu.Lock(); m.duplicates++; m.mu.Unlock() }
func (m *countingMetrics) GroupsDropped(int)    {}

type fixture struct {
	det     *app.Detector
	sink    *memorySink
	metrics *countingMetrics
}

func newFixture(t *testing.T, opts app.DetectorOptions) *fixture {
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
	f := &fixture{sink: &memorySink{}, metrics: &countingMetrics{}}
	opts.Self = "monitor"
	f.det, err = app.NewDetector(slog.New(slog.DiscardHandler), rules.Default(),
		adapters.PlainOpener{TrustSource: true}, f.sink, seen, open, f.metrics, opts)
	if err != nil {
		t.Fatal(err)
	}

	return f
}

func message(t *testing.T, ev events.SecurityEvent, stored time.Time) *app.Message {
	t.Helper()

	if ev.ID == "" {
		ev.ID = uuid.NewString()
	}
	ev.Time = stored
	subject, err := events.Subject(ev.Source, ev.Type)
	if err != nil {
		t.Fatal(err)
	}
	data, err := json.Marshal(ev)
	if err != nil {
		t.Fatal(err)
	}

	return &app.Message{Subject: subject, Data: data, Stored: stored, Delivered: 1}
}

func finding(identity string) events.SecurityEvent {
	return events.SecurityEvent{Type: "codesec.finding", Source: "codesec", Subject: identity,
		Status: "failure", Severity: "critical", Resource: "bundle/1"}
}

func TestRedeliveredEventCountsOnce(t *testing.T) {
	f := newFixture(t, app.DetectorOptions{})
	ctx := context.Background()
	now := time.Now()

	msg := message(t, finding("agent-1"), now)
	if err := f.det.Process(ctx, msg); err != nil {
		t.Fatalf("Process: %v", err)
	}
	// The ack was lost: JetStream delivers the same message again.
	msg.Delivered = 2
	if err := f.det.Process(ctx, msg); err != nil {
		t.Fatalf("Process redelivery: %v", err)
	}
	if err := f.det.Flush(ctx, now.Add(time.Minute)); err != nil {
		t.Fatalf("Flush: %v", err)
	}

	if len(f.sink.threats) != 1 {
		t.Fatalf("got %d threat revisions, want 1: %+v", len(f.sink.threats), f.sink.threats)
	}
	if got := f.sink.threats[0].Count; got != 1 {
		t.Errorf("count: got %d, want 1", got)
	}
	if f.metrics.duplicates != 1 {
		t.Errorf("duplicates: got %d, want 1", f.metrics.duplicates)
	}
}

func TestRedeliveredUnmatchedEventProcessed(t *testing.T) {
	f := newFixture(t, app.DetectorOptions{})
	ev := events.SecurityEvent{Type: "keyvault.list", Source: "keyvault", Subject: "agent-1",
		Status: "success", Severity: "info"}
	msg := message(t, ev, time.Now())
	msg.Delivered = 3
	if err := f.det.Process(context.Background(), msg); err != nil {
		t.Fatalf("Process: %v", err)
	}
	if f.metrics.events != 1 || f.metrics.duplicates != 0 {
		t.Errorf("events %d duplicates %d, want 1 and 0", f.metrics.events, f.metrics.duplicates)
	}
}

func TestFloodShedsBySource(t *testing.T) {
	f := newFixture(t, app.DetectorOptions{FloodRatePerSecond: 10, FloodBurst: 10,
		FloodReportInterval: time.Second})
	ctx := context.Background()
	start := time.Now()

	// codesec publishes 100 events in 1 s of stream time; keyvault 5.
	for i := range 100 {
		at := start.Add(time.Duration(i) * 10 * time.Millisecond)
		ev := events.SecurityEvent{Type: "codesec.scan", Source: "codesec",
			Status: "success", Severity: "info"}
		if err := f.det.Process(ctx, message(t, ev, at)); err != nil {
			t.Fatalf("Process: %v", err)
		}
		if i%20 == 0 {
			ev := events.SecurityEvent{Type: "keyvault.list", Source: "keyvault",
				Status: "success", Severity: "info"}
			if err := f.det.Process(ctx, message(t, ev, at)); err != nil {
				t.Fatalf("Process: %v", err)
			}
		}
	}
	if err := f.det.Flush(ctx, start.Add(2*time.Second)); err != nil {
		t.Fatalf("Flush: %v", err)
	}

	// Burst 10 plus 10/s over the 0.99 s of the flood: about 20 processed.
	if f.metrics.shed < 75 || f.metrics.shed > 85 {
		t.Errorf("shed: got %d of 100 codesec events, want about 80", f.metrics.shed)
	}
	if f.metrics.events != 100-f.metrics.shed+5 {
		t.Errorf("processed: got %d, want %d codesec plus 5 keyvault",
			f.metrics.events, 100-f.metrics.shed)
	}
	var flood []domain.Threat
	for _, th := range f.sink.threats {
		if th.RuleID == "source-flood" {
			flood = append(flood, th)
		}
	}
	if len(flood) == 0 {
		t.Fatal("no source-flood threat")
	}
	if flood[0].Group != `metadata.source="codesec"` {
		t.Errorf("flood group: got %s, want codesec only", flood[0].Group)
	}
}

func TestBacklogIsNotAFlood(t *testing.T) {
	f := newFixture(t, app.DetectorOptions{FloodRatePerSecond: 10, FloodBurst: 10})
	start := time.Now().Add(-time.Hour)

	// 100 events stored over 20 s an hour ago, read back at once.
	for i := range 100 {
		ev := events.SecurityEvent{Type: "codesec.scan", Source: "codesec",
			Status: "success", Severity: "info"}
		at := start.Add(time.Duration(i) * 200 * time.Millisecond)
		if err := f.det.Process(context.Background(), message(t, ev, at)); err != nil {
			t.Fatalf("Process: %v", err)
		}
	}
	if f.metrics.shed != 0 {
		t.Errorf("shed %d events of a backlog stored at 5/s, want 0", f.metrics.shed)
	}
}

func TestUndecodableEventReported(t *testing.T) {
	f := newFixture(t, app.DetectorOptions{})
	msg := &app.Message{Subject: "nodex.v1.events.codesec.codesec.finding",
		Data: []byte("\x00garbage"), Stored: time.Now(), Delivered: 1}
	if err := f.det.Process(context.Background(), msg); err != nil {
		t.Fatalf("Process: %v", err)
	}
	if f.metrics.rejected != 1 {
		t.Errorf("rejected: got %d, want 1", f.metrics.rejected)
	}
	if len(f.sink.threats) != 1 || f.sink.threats[0].RuleID != "event-forged" {
		t.Errorf("threats: got %+v, want one from event-forged", f.sink.threats)
	}
}

func TestThreatKeptWhileStreamDown(t *testing.T) {
	f := newFixture(t, app.DetectorOptions{})
	ctx := context.Background()
	now := time.Now()

	f.sink.down = true
	msg := message(t, finding("agent-1"), now)
	if err := f.det.Process(ctx, msg); err == nil {
		t.Fatal("Process succeeded with the threat stream down, want an error to nak")
	}

	// JetStream redelivers while the stream is still down, then it recovers.
	msg.Delivered = 2
	if err := f.det.Process(ctx, msg); err != nil {
		t.Fatalf("Process redelivery: %v", err)
	}
	if f.metrics.duplicates != 1 {
		t.Errorf("duplicates: got %d, want 1", f.metrics.duplicates)
	}
	f.sink.down = false
	if err := f.det.Flush(ctx, now); err != nil {
		t.Fatalf("Flush: %v", err)
	}

	if len(f.sink.threats) != 1 {
		t.Fatalf("got %d threats after recovery, want 1", len(f.sink.threats))
	}
	if got := f.sink.threats[0].Count; got != 1 {
		t.Errorf("count: got %d, want 1", got)
	}
}

func TestOwnRejectionReportSkipped(t *testing.T) {
	f := newFixture(t, app.DetectorOptions{})
	report := func(subject string) events.SecurityEvent {
		return events.SecurityEvent{Type: "envelope.rejected", Source: "monitor",
			Status: "failure", Severity: "high", Metadata: map[string]string{
				"reason": "bad_signature", "subject": subject, "origin": "connection:x"}}
	}

	// The monitor already reported this stream event as monitor.event_rejected.
	own := message(t, report("nodex.v1.events.keyvault.authz.decision"), time.Now())
	if err := f.det.Process(context.Background(), own); err != nil {
		t.Fatalf("Process: %v", err)
	}
	if len(f.sink.threats) != 0 {
		t.Fatalf("own report of a stream rejection raised %d threats, want 0",
			len(f.sink.threats))
	}

	// A forged request to the monitor is reported only by this event.
	request := message(t, report("nodex.v1.monitor.threats"), time.Now())
	if err := f.det.Process(context.Background(), request); err != nil {
		t.Fatalf("Process: %v", err)
	}
	if len(f.sink.threats) != 1 || f.sink.threats[0].RuleID != "envelope-bad-signature" {
		t.Errorf("threats: got %+v, want one from envelope-bad-signature", f.sink.threats)
	}
}
