package party

import (
	"strconv"
	"strings"

	"github.com/nodexsec/nodex/libs/envelope"
	"github.com/nodexsec/nodex/libs/events"
)

// RejectionEventType is the event type of a rejected envelope.
const RejectionEventType = "envelope.rejected"

// RejectionEvent builds the security event of one envelope rejection. It
// never names the message's claimed sender. Metadata "origin" names where
// the message came from as far as NATS vouches for it. On event subjects,
// permissions let only identity X publish under nodex.v1.events.X., so the
// origin is "connection:X". Elsewhere it is "subject:<subject>".
func RejectionEvent(r envelope.Rejection) events.SecurityEvent {
	md := map[string]string{
		"reason":     ReasonCode(r.Reason),
		"subject":    truncate(r.Subject),
		"origin":     "subject:" + truncate(r.Subject),
		"suppressed": strconv.FormatUint(r.Suppressed, 10),
	}
	if conn := emitterOf(r.Subject); conn != "" {
		md["origin"] = "connection:" + conn
	}

	return events.SecurityEvent{
		Type:     RejectionEventType,
		Time:     r.Time,
		Action:   "open",
		Resource: truncate(r.Subject),
		Status:   events.StatusFailure,
		Severity: events.SeverityHigh,
		Metadata: md,
	}
}

// emitterOf returns the emitter token of an event subject, or "".
func emitterOf(subject string) string {
	rest, ok := strings.CutPrefix(subject, events.SubjectPrefix)
	if !ok {
		return ""
	}
	tok, _, _ := strings.Cut(rest, ".")

	return tok
}

func truncate(s string) string {
	if len(s) > events.MaxFieldBytes {
		return s[:events.MaxFieldBytes]
	}

	return s
}

// ReasonCode returns the snake_case name of an envelope rejection reason,
// or "unknown".
func ReasonCode(reason error) string {
	if code, ok := envelope.ReasonCode(reason); ok {
		return code
	}

	return "unknown"
}
