// Package domain holds the monitor's detection model: security events as the
// detector sees them, rules, the rule engine with its sliding windows and
// sequences, and threats. It does no I/O; callers feed it observations in
// stream order and publish the threats it returns.
package domain

import (
	"errors"
	"fmt"
	"strings"
	"time"
)

// ErrInvalidEvent marks an event body that fails the SecurityEvent schema.
var ErrInvalidEvent = errors.New("monitor: invalid security event")

// Event statuses and severities accepted by [Event.Validate].
var (
	eventStatuses   = []string{"success", "failure"}
	eventSeverities = []string{"info", "low", "medium", "high", "critical"}
)

// Limits on event fields, so that one event cannot grow the detector's state
// or a threat report without bound.
const (
	MaxFieldBytes     = 1024
	MaxMetadataKeys   = 64
	MaxMetadataValue  = 4096
	maxTypeTokenBytes = 128
)

// Event is one security event in the shape every NodeX service publishes on
// nodex.v1.events.<source>.<type>. Field names and JSON tags match the
// SecurityEvent body documented in schemas/monitor.
type Event struct {
	ID       string            `json:"id"`
	Type     string            `json:"type"`
	Time     time.Time         `json:"time"`
	Source   string            `json:"source"`
	Action   string            `json:"action,omitempty"`
	Resource string            `json:"resource,omitempty"`
	Subject  string            `json:"subject,omitempty"`
	Status   string            `json:"status"`
	Severity string            `json:"severity"`
	TraceID  string            `json:"trace_id,omitempty"`
	Metadata map[string]string `json:"metadata,omitempty"`
}

// Validate checks ev against the SecurityEvent schema: required fields,
// enumerations, the type's token syntax and field size limits.
func (ev *Event) Validate() error {
	switch {
	case ev.ID == "":
		return fmt.Errorf("%w: missing id", ErrInvalidEvent)
	case ev.Time.IsZero():
		return fmt.Errorf("%w: missing time", ErrInvalidEvent)
	case !validToken(ev.Source):
		return fmt.Errorf("%w: source %q is not a lowercase token", ErrInvalidEvent, ev.Source)
	case !validType(ev.Type):
		return fmt.Errorf("%w: type %q is not dot-separated lowercase tokens",
			ErrInvalidEvent, ev.Type)
	case !contains(eventStatuses, ev.Status):
		return fmt.Errorf("%w: status %q is not success or failure", ErrInvalidEvent, ev.Status)
	case !contains(eventSeverities, ev.Severity):
		return fmt.Errorf("%w: severity %q is not one of %v",
			ErrInvalidEvent, ev.Severity, eventSeverities)
	}

	for name, v := range map[string]string{
		"id": ev.ID, "action": ev.Action, "resource": ev.Resource,
		"subject": ev.Subject, "trace_id": ev.TraceID,
	} {
		if len(v) > MaxFieldBytes {
			return fmt.Errorf("%w: %s is %d bytes, max %d",
				ErrInvalidEvent, name, len(v), MaxFieldBytes)
		}
	}

	if len(ev.Metadata) > MaxMetadataKeys {
		return fmt.Errorf("%w: %d metadata keys, max %d",
			ErrInvalidEvent, len(ev.Metadata), MaxMetadataKeys)
	}
	for k, v := range ev.Metadata {
		if len(k) > maxTypeTokenBytes || len(v) > MaxMetadataValue {
			return fmt.Errorf("%w: metadata %q exceeds size limits", ErrInvalidEvent, Escape(k))
		}
	}

	return nil
}

// validToken reports whether s is one subject token: a-z, 0-9 and '_'.
func validToken(s string) bool {
	if s == "" || len(s) > maxTypeTokenBytes {
		return false
	}
	for _, c := range []byte(s) {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_') {
			return false
		}
	}

	return true
}

// validType reports whether s is one or more tokens joined by dots.
func validType(s string) bool {
	if len(s) > maxTypeTokenBytes {
		return false
	}
	for tok := range strings.SplitSeq(s, ".") {
		if !validToken(tok) {
			return false
		}
	}

	return true
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}

	return false
}
