// Package logx sets up log/slog for NodeX programs: the attribute keys every
// component shares, a handler that adds trace and correlation ids from the
// context, and helpers that keep secrets and control characters out of logs.
package logx

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"

	"go.opentelemetry.io/otel/trace"
)

// Attribute keys. Components log with these constants so that one query finds
// one field across every service.
const (
	KeyService       = "service"
	KeyComponent     = "component"
	KeySubject       = "subject"
	KeyStream        = "stream"
	KeyConsumer      = "consumer"
	KeyMsgID         = "msg_id"
	KeyEventType     = "event_type"
	KeySchema        = "schema"
	KeyCorrelationID = "correlation_id"
	KeyTraceID       = "trace_id"
	KeyIdentity      = "identity"
	KeyKeyID         = "key_id"
	KeyScanID        = "scan_id"
	KeyRunID         = "run_id"
	KeyBundleID      = "bundle_id"
	KeyIncidentID    = "incident_id"
	KeyAttempt       = "attempt"
	KeyDuration      = "duration"
	KeyError         = "error"
	KeyUnexpected    = "unexpected"
	// KeyNotAfter is the expiry of a key, delegation or credential.
	KeyNotAfter = "not_after"
)

// Options configure [New]. The zero value logs text at Info level.
type Options struct {
	// Format is "text" (the default) or "json".
	Format string
	// Level is the minimum level; the zero value is Info.
	Level slog.Level
}

// New returns a logger writing to w. Each record gets trace_id from the
// OpenTelemetry span in its context and correlation_id from
// [WithCorrelationID], so use the …Context logging calls.
func New(w io.Writer, opts Options) (*slog.Logger, error) {
	ho := &slog.HandlerOptions{Level: opts.Level}
	var h slog.Handler
	switch opts.Format {
	case "", "text":
		h = slog.NewTextHandler(w, ho)
	case "json":
		h = slog.NewJSONHandler(w, ho)
	default:
		return nil, fmt.Errorf("logx: log format %q is not supported: use text or json", opts.Format)
	}

	return slog.New(contextHandler{h}), nil
}

// ParseLevel parses debug, info, warn or error.
func ParseLevel(s string) (slog.Level, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(s)); err != nil {
		return 0, fmt.Errorf("logx: log level %q is not one of debug, info, warn, error", s)
	}

	return l, nil
}

// Discard returns a logger that drops every record, for tests and tools that
// have nowhere to log.
func Discard() *slog.Logger {
	return slog.New(slog.DiscardHandler)
}

type correlationKey struct{}

// WithCorrelationID returns a context whose log records carry id as
// correlation_id.
func WithCorrelationID(ctx context.Context, id string) context.Context {
	return context.WithValue(ctx, correlationKey{}, id)
}

// CorrelationID returns the id stored by [WithCorrelationID], or "".
func CorrelationID(ctx context.Context) string {
	id, _ := ctx.Value(correlationKey{}).(string)

	return id
}

// contextHandler adds trace_id and correlation_id from the record's context.
type contextHandler struct{ slog.Handler }

func (h contextHandler) Handle(ctx context.Context, r slog.Record) error {
	if sc := trace.SpanContextFromContext(ctx); sc.HasTraceID() {
		r.AddAttrs(slog.String(KeyTraceID, sc.TraceID().String()))
	}
	if id := CorrelationID(ctx); id != "" {
		r.AddAttrs(slog.String(KeyCorrelationID, id))
	}

	return h.Handler.Handle(ctx, r)
}

func (h contextHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return contextHandler{h.Handler.WithAttrs(attrs)}
}

func (h contextHandler) WithGroup(name string) slog.Handler {
	return contextHandler{h.Handler.WithGroup(name)}
}

// Secret is a string that never logs its value: it implements
// slog.LogValuer and fmt.Formatter and prints as [REDACTED].
type Secret string

// LogValue implements slog.LogValuer.
func (Secret) LogValue() slog.Value { return slog.StringValue("[REDACTED]") }

// Format implements fmt.Formatter so that %v, %s and %q never print the value.
func (Secret) Format(f fmt.State, _ rune) { io.WriteString(f, "[REDACTED]") }

// Err returns the error attribute with the standard key.
func Err(err error) slog.Attr { return slog.Any(KeyError, err) }

// Escape returns s with control characters, including newlines, written as
// Go escapes, so a value taken from a message cannot forge a log line or a
// report line. Printable text, including non-ASCII, is kept.
func Escape(s string) string {
	clean := true
	for _, r := range s {
		if isControl(r) {
			clean = false
			break
		}
	}
	if clean {
		return s
	}
	var b strings.Builder
	for _, r := range s {
		if isControl(r) {
			q := fmt.Sprintf("%+q", string(r))
			b.WriteString(q[1 : len(q)-1])
			continue
		}
		b.WriteRune(r)
	}

	return b.String()
}

func isControl(r rune) bool {
	return r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) || r == '\u2028' || r == '\u2029'
}
