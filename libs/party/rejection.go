package party

import (
	"errors"
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

// reasonCodes are the snake_case names of the envelope rejection reasons
// that monitor rules match on.
var reasonCodes = map[error]string{
	envelope.ErrTooLarge:          "too_large",
	envelope.ErrTooManyRecipients: "too_many_recipients",
	envelope.ErrMalformed:         "malformed",
	envelope.ErrUnknownVersion:    "unknown_version",
	envelope.ErrStale:             "stale_registry",
	envelope.ErrUnknownSender:     "unknown_sender",
	envelope.ErrSenderSuspended:   "suspended_sender",
	envelope.ErrSenderRevoked:     "revoked_sender",
	envelope.ErrRetiredKey:        "retired_key",
	envelope.ErrCompromisedKey:    "compromised_key",
	envelope.ErrBadSignature:      "bad_signature",
	envelope.ErrSubjectMismatch:   "subject_mismatch",
	envelope.ErrNotAddressed:      "not_addressed",
	envelope.ErrNotFresh:          "not_fresh",
	envelope.ErrReplay:            "replay",
	envelope.ErrWrapMissing:       "wrap_missing",
	envelope.ErrWrapInvalid:       "wrap_invalid",
	envelope.ErrKeyCommitment:     "key_commitment",
	envelope.ErrDecrypt:           "decrypt",
	envelope.ErrSchema:            "schema",
}

// ReasonCode returns the snake_case name of an envelope rejection reason,
// or "unknown".
func ReasonCode(reason error) string {
	for sentinel, code := range reasonCodes {
		if errors.Is(reason, sentinel) {
			return code
		}
	}

	return "unknown"
}
