// Package events defines the SecurityEvent that every NodeX party emits, the
// NODEX_EVENTS stream that stores them, and the publisher services use.
//
// Events are encrypted to the [AudienceRole] role and published on
// nodex.v1.events.<source>.<type>. The stream is append-only: delete and
// purge are denied, and old events leave only by the documented age and size
// limits.
package events

import (
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"

	"github.com/google/uuid"
)

// SubjectPrefix is the subject prefix of every security event.
const SubjectPrefix = "nodex.v1.events."

// AudienceRole is the envelope role that events are encrypted to: the monitor
// and incident services and operators hold it.
const AudienceRole = "audit"

// Status values.
const (
	StatusSuccess = "success"
	StatusFailure = "failure"
)

// Severity values, lowest first.
const (
	SeverityInfo     = "info"
	SeverityLow      = "low"
	SeverityMedium   = "medium"
	SeverityHigh     = "high"
	SeverityCritical = "critical"
)

// Limits on one event, checked by [SecurityEvent.Validate].
const (
	MaxMetadataEntries = 32
	MaxFieldBytes      = 1024
)

// SecurityEvent is one security-relevant fact: an access decision, a
// rejected message, a finding, a sandbox violation, a key operation. Its JSON
// Schema is schemas/events/security-event.json.
type SecurityEvent struct {
	// ID is a UUID; the publisher sets it when empty.
	ID string `json:"id"`
	// Type is "<source>.<name>", lower snake case tokens, e.g.
	// "keyvault.retrieve" or "envelope.rejected".
	Type string `json:"type"`
	// Time is when the fact happened; the publisher sets it when zero.
	Time time.Time `json:"time"`
	// Source is the identity id of the emitting party; the publisher sets it.
	Source string `json:"source"`
	// Action is the verb attempted, e.g. "retrieve".
	Action string `json:"action,omitempty"`
	// Resource names what was acted on, e.g. "key:openai-prod"; never a
	// secret value.
	Resource string `json:"resource,omitempty"`
	// Subject is the authenticated identity id that acted, or "" when the
	// actor is unauthenticated (see Metadata "claimed_sender" and
	// "connection" for such cases: a claim proves nothing).
	Subject string `json:"subject,omitempty"`
	// Status is success or failure.
	Status string `json:"status"`
	// Severity is info, low, medium, high or critical.
	Severity string `json:"severity"`
	// TraceID is the W3C trace id of the request, for investigation only.
	TraceID string `json:"trace_id,omitempty"`
	// Metadata holds extra string fields; never secrets.
	Metadata map[string]string `json:"metadata,omitempty"`
}

var tokenRE = regexp.MustCompile(`^[a-z0-9_]+$`)

var severities = map[string]int{
	SeverityInfo: 0, SeverityLow: 1, SeverityMedium: 2, SeverityHigh: 3, SeverityCritical: 4,
}

// SeverityRank orders severities from info (0) to critical (4); an unknown
// severity ranks -1.
func SeverityRank(s string) int {
	r, ok := severities[s]
	if !ok {
		return -1
	}

	return r
}

// ErrInvalid is returned by Validate for every malformed event.
var ErrInvalid = errors.New("events: invalid security event")

// Validate checks the fields a consumer relies on. The error names the field
// and its problem.
func (e *SecurityEvent) Validate() error {
	if _, err := uuid.Parse(e.ID); err != nil {
		return fmt.Errorf("%w: id %q is not a UUID", ErrInvalid, e.ID)
	}
	if _, _, err := SplitType(e.Type); err != nil {
		return err
	}
	if e.Time.IsZero() {
		return fmt.Errorf("%w: time is missing", ErrInvalid)
	}
	if !tokenRE.MatchString(strings.ReplaceAll(e.Source, "-", "_")) {
		return fmt.Errorf("%w: source %q must be an identity id", ErrInvalid, e.Source)
	}
	if e.Status != StatusSuccess && e.Status != StatusFailure {
		return fmt.Errorf("%w: status %q must be success or failure", ErrInvalid, e.Status)
	}
	if SeverityRank(e.Severity) < 0 {
		return fmt.Errorf("%w: severity %q must be info, low, medium, high or critical",
			ErrInvalid, e.Severity)
	}
	if len(e.Metadata) > MaxMetadataEntries {
		return fmt.Errorf("%w: %d metadata entries, max %d", ErrInvalid, len(e.Metadata),
			MaxMetadataEntries)
	}
	for _, f := range []string{e.Action, e.Resource, e.Subject, e.TraceID} {
		if len(f) > MaxFieldBytes {
			return fmt.Errorf("%w: a field is %d bytes, max %d", ErrInvalid, len(f), MaxFieldBytes)
		}
	}
	for k, v := range e.Metadata {
		if len(k) > MaxFieldBytes || len(v) > MaxFieldBytes {
			return fmt.Errorf("%w: metadata %q exceeds %d bytes", ErrInvalid, k, MaxFieldBytes)
		}
	}

	return nil
}

// SplitType splits "<source>.<name>" into its two tokens.
func SplitType(typ string) (source, name string, err error) {
	source, name, ok := strings.Cut(typ, ".")
	if !ok || !tokenRE.MatchString(source) || !tokenRE.MatchString(name) {
		return "", "", fmt.Errorf("%w: type %q must be <source>.<name> in a-z, 0-9 and _",
			ErrInvalid, typ)
	}

	return source, name, nil
}

// Subject returns the subject an event is published on:
// nodex.v1.events.<emitter>.<type source>.<type name>, where emitter is the
// publishing identity with '-' written as '_'. The emitter token lets NATS
// permissions confine each identity to its own events.
func Subject(emitter, typ string) (string, error) {
	src, name, err := SplitType(typ)
	if err != nil {
		return "", err
	}
	em := strings.ReplaceAll(emitter, "-", "_")
	if !tokenRE.MatchString(em) {
		return "", fmt.Errorf("%w: emitter %q is not an identity id", ErrInvalid, emitter)
	}

	return SubjectPrefix + em + "." + src + "." + name, nil
}
