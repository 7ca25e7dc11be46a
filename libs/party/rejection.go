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
// never names the message's claimed sender. On event subjects, NATS
// permissions let only identity X publish under nodex.v1.events.X., so the
// subject's emitter token names the connection the message came from; the
// event carries it as metadata "connection".
func RejectionEvent(r envelope.Rejection) events.SecurityEvent {
	reason := "unknown"
	if r.Reason != nil {
		reason = strings.TrimPrefix(r.Reason.Error(), "envelope: ")
	}
	md := map[string]string{
		"reason":     reason,
		"subject":    truncate(r.Subject),
		"suppressed": strconv.FormatUint(r.Suppressed, 10),
	}
	if conn := emitterOf(r.Subject); conn != "" {
		md["connection"] = conn
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
