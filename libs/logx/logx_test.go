package logx

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"testing"

	"go.opentelemetry.io/otel/trace"
)

func TestSecretNeverPrinted(t *testing.T) {
	var buf bytes.Buffer
	log, err := New(&buf, Options{Format: "json"})
	if err != nil {
		t.Fatal(err)
	}
	s := Secret("sk-live-0123456789")
	log.Info("key stored", "value", s)
	msg := fmt.Sprintf("%v %s %q %+v", s, s, s, s)
	for _, out := range []string{buf.String(), msg} {
		if strings.Contains(out, "0123456789") {
			t.Errorf("secret leaked in %q", out)
		}
	}
}

func TestContextIDs(t *testing.T) {
	var buf bytes.Buffer
	log, err := New(&buf, Options{Format: "json"})
	if err != nil {
		t.Fatal(err)
	}
	tid, _ := trace.TraceIDFromHex("4bf92f3577b34da6a3ce929d0e0e4736")
	sid, _ := trace.SpanIDFromHex("00f067aa0ba902b7")
	sc := trace.NewSpanContext(trace.SpanContextConfig{TraceID: tid, SpanID: sid})
	ctx := trace.ContextWithSpanContext(context.Background(), sc)
	ctx = WithCorrelationID(ctx, "corr-1")
	log.InfoContext(ctx, "request handled")
	out := buf.String()
	if !strings.Contains(out, `"trace_id":"4bf92f3577b34da6a3ce929d0e0e4736"`) {
		t.Errorf("missing trace_id in %s", out)
	}
	if !strings.Contains(out, `"correlation_id":"corr-1"`) {
		t.Errorf("missing correlation_id in %s", out)
	}
}

func TestEscape(t *testing.T) {
	tests := []struct {
		name, in, want string
	}{
		{"plain", "agent-1", "agent-1"},
		{"newline", "a\nlevel=ERROR msg=forged", `a\nlevel=ERROR msg=forged`},
		{"carriage return", "a\rb", `a\rb`},
		{"escape sequence", "a\x1b[31m", `a\x1b[31m`},
		{"line separator", "a\u2028b", `a\u2028b`},
		{"unicode kept", "héllo", "héllo"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Escape(tt.in); got != tt.want {
				t.Errorf("Escape(%q) = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
}

func TestNewRejectsUnknownFormat(t *testing.T) {
	_, err := New(&bytes.Buffer{}, Options{Format: "xml"})
	if err == nil || !strings.Contains(err.Error(), `"xml"`) {
		t.Errorf("New(xml) error = %v, want one naming the format", err)
	}
}
