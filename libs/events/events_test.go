package events

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"

	"github.com/nodexsec/nodex/libs/testkit"
)

// jetStreamSink stores plaintext JSON in the real stream. It exercises the
// stream and the publisher's accounting; production code publishes through
// libs/bus, which encrypts.
type jetStreamSink struct{ js jetstream.JetStream }

func (s jetStreamSink) Publish(ctx context.Context, subject, _ string, body any) error {
	b, err := json.Marshal(body)
	if err != nil {
		return err
	}
	_, err = s.js.Publish(ctx, subject, b)

	return err
}

type failingSink struct{ calls atomic.Int32 }

func (s *failingSink) Publish(context.Context, string, string, any) error {
	s.calls.Add(1)
	return errors.New("stream unavailable")
}

func validEvent() SecurityEvent {
	return SecurityEvent{
		ID: "8c7e1f7e-3f5e-4c39-9a1a-0c1b2d3e4f50", Type: "keyvault.retrieve",
		Time: time.Now(), Source: "keyvault", Status: StatusSuccess, Severity: SeverityInfo,
	}
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name   string
		modify func(*SecurityEvent)
		field  string
	}{
		{"bad id", func(e *SecurityEvent) { e.ID = "x" }, "id"},
		{"type without source", func(e *SecurityEvent) { e.Type = "retrieve" }, "type"},
		{"type upper case", func(e *SecurityEvent) { e.Type = "KeyVault.retrieve" }, "type"},
		{"type subject injection", func(e *SecurityEvent) { e.Type = "keyvault.>" }, "type"},
		{"no time", func(e *SecurityEvent) { e.Time = time.Time{} }, "time"},
		{"bad status", func(e *SecurityEvent) { e.Status = "ok" }, "status"},
		{"bad severity", func(e *SecurityEvent) { e.Severity = "urgent" }, "severity"},
		{"huge resource", func(e *SecurityEvent) { e.Resource = strings.Repeat("a", 2000) }, "field"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ev := validEvent()
			tt.modify(&ev)
			err := ev.Validate()
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("Validate() = %v, want ErrInvalid", err)
			}
			if !strings.Contains(err.Error(), tt.field) {
				t.Errorf("error %q does not name %q", err, tt.field)
			}
		})
	}
	ev := validEvent()
	if err := ev.Validate(); err != nil {
		t.Errorf("valid event rejected: %v", err)
	}
}

func TestSubject(t *testing.T) {
	got, err := Subject("agent-demo", "sandbox.violation")
	if err != nil {
		t.Fatal(err)
	}
	if want := "nodex.v1.events.agent_demo.sandbox.violation"; got != want {
		t.Errorf("Subject = %q, want %q", got, want)
	}
	if _, err := Subject("a.b", "x.y"); err == nil {
		t.Error("Subject accepted an emitter with a dot")
	}
}

func TestStreamIsAppendOnly(t *testing.T) {
	ctx := context.Background()
	js := testkit.JetStream(t, testkit.NATSServer(t))
	s, err := EnsureStream(ctx, js, StreamOptions{})
	if err != nil {
		t.Fatal(err)
	}
	p := NewPublisher(jetStreamSink{js}, "keyvault", PublisherOptions{})
	defer p.Close(ctx)
	if err := p.PublishSync(ctx, validEvent()); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteMsg(ctx, 1); err == nil {
		t.Error("deleting an event succeeded, want denied")
	}
	if err := s.Purge(ctx); err == nil {
		t.Error("purging the stream succeeded, want denied")
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.State.Msgs != 1 {
		t.Errorf("stream holds %d events, want 1", info.State.Msgs)
	}
}

func TestPublishSyncFailsWithoutStream(t *testing.T) {
	ctx := context.Background()
	js := testkit.JetStream(t, testkit.NATSServer(t))
	p := NewPublisher(jetStreamSink{js}, "keyvault", PublisherOptions{Timeout: time.Second})
	defer p.Close(ctx)
	if err := p.PublishSync(ctx, validEvent()); err == nil {
		t.Fatal("PublishSync succeeded with no stream to persist to")
	}
	if p.Published() != 0 {
		t.Errorf("Published() = %d, want 0", p.Published())
	}
}

func TestAsyncPublishCountsLost(t *testing.T) {
	ctx := context.Background()
	sink := &failingSink{}
	var reported atomic.Int32
	p := NewPublisher(sink, "policy", PublisherOptions{
		Attempts: 2,
		OnLost:   func(SecurityEvent, error) { reported.Add(1) },
	})
	for range 5 {
		p.Publish(ctx, validEvent())
	}
	if err := p.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if p.Lost() != 5 {
		t.Errorf("Lost() = %d, want 5", p.Lost())
	}
	if reported.Load() != 5 {
		t.Errorf("OnLost called %d times, want 5", reported.Load())
	}
	if sink.calls.Load() != 10 {
		t.Errorf("sink called %d times, want 2 attempts for each of 5 events", sink.calls.Load())
	}
}

func TestAsyncPublishPersists(t *testing.T) {
	ctx := context.Background()
	js := testkit.JetStream(t, testkit.NATSServer(t))
	s, err := EnsureStream(ctx, js, StreamOptions{})
	if err != nil {
		t.Fatal(err)
	}
	p := NewPublisher(jetStreamSink{js}, "policy", PublisherOptions{})
	for range 100 {
		ev := validEvent()
		ev.ID = ""
		p.Publish(ctx, ev)
	}
	if err := p.Close(ctx); err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.State.Msgs != 100 || p.Published() != 100 || p.Lost() != 0 {
		t.Errorf("stored %d, published %d, lost %d; want 100, 100, 0",
			info.State.Msgs, p.Published(), p.Lost())
	}
}

func TestPublishAfterCloseIsLost(t *testing.T) {
	ctx := context.Background()
	p := NewPublisher(&failingSink{}, "policy", PublisherOptions{})
	_ = p.Close(ctx)
	p.Publish(ctx, validEvent())
	if p.Lost() != 1 {
		t.Errorf("Lost() = %d after publishing on a closed publisher, want 1", p.Lost())
	}
}

// recordingSink keeps the subject and body of every publish.
type recordingSink struct {
	subjects []string
	bodies   []SecurityEvent
}

func (s *recordingSink) Publish(_ context.Context, subject, _ string, body any) error {
	s.subjects = append(s.subjects, subject)
	s.bodies = append(s.bodies, body.(SecurityEvent))

	return nil
}

func TestPublishReportedSyncKeepsReporter(t *testing.T) {
	sink := &recordingSink{}
	p := NewPublisher(sink, "monitor", PublisherOptions{})
	defer p.Close(context.Background())

	ev := SecurityEvent{Type: "agent.note", Source: "agent-a", Subject: "agent-a",
		Status: StatusSuccess, Severity: SeverityInfo}
	if err := p.PublishReportedSync(context.Background(), ev); err != nil {
		t.Fatalf("PublishReportedSync: %v", err)
	}
	if got, want := sink.subjects[0], "nodex.v1.events.monitor.agent.note"; got != want {
		t.Errorf("subject = %q, want %q (the relay's own token)", got, want)
	}
	if got := sink.bodies[0].Source; got != "agent-a" {
		t.Errorf("source = %q, want the reporter agent-a", got)
	}

	ev.Source = ""
	if err := p.PublishReportedSync(context.Background(), ev); !errors.Is(err, ErrInvalid) {
		t.Errorf("report without a reporter: got %v, want ErrInvalid", err)
	}
}

// traceSink records the span context each publish ran under.
type traceSink struct {
	mu    sync.Mutex
	spans []trace.SpanContext
}

func (s *traceSink) Publish(ctx context.Context, _, _ string, _ any) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.spans = append(s.spans, trace.SpanContextFromContext(ctx))

	return nil
}

func TestPublishCarriesCallerTrace(t *testing.T) {
	tp := sdktrace.NewTracerProvider()
	defer tp.Shutdown(context.Background())
	ctx, span := tp.Tracer("test").Start(context.Background(), "caller")
	sink := &traceSink{}
	p := NewPublisher(sink, "codesec", PublisherOptions{})

	p.Publish(ctx, validEvent())
	span.End()
	if err := p.Close(context.Background()); err != nil {
		t.Fatalf("Close: %v", err)
	}

	if len(sink.spans) != 1 {
		t.Fatalf("got %d publishes, want 1", len(sink.spans))
	}
	if got, want := sink.spans[0].TraceID(), span.SpanContext().TraceID(); got != want {
		t.Errorf("asynchronous publish ran in trace %s, want the caller's %s", got, want)
	}
}
