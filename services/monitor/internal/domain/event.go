// Package domain holds the monitor's detection model: security events with
// what their transport proved, rules, the rule engine with its sliding
// windows and sequences, and threats. It does no I/O. Callers feed it
// observations in stream order and publish the threats it returns.
package domain

import (
	"errors"
	"fmt"
	"strings"

	"github.com/nodexsec/nodex/libs/events"
)

// ErrInvalidEvent marks a stored event that fails the SecurityEvent schema or
// does not fit the subject and envelope it arrived with.
var ErrInvalidEvent = errors.New("monitor: invalid security event")

// Event is one security event, as every NodeX party publishes it on
// nodex.v1.events.<source>.<type>.
type Event = events.SecurityEvent

// ReportedTypeSource is the type source of the events that agents report
// through nodex.v1.monitor.report, as in "agent.task_failed". The monitor
// relays such a report: it signs the event, publishes it under its own
// emitter token and names the authenticated reporter as the event's source
// and subject. No other party may emit this type source.
const ReportedTypeSource = "agent"

// IsReported reports whether ev's type is in the [ReportedTypeSource]
// namespace.
func IsReported(ev *Event) bool {
	return strings.HasPrefix(ev.Type, ReportedTypeSource+".")
}

// CheckEvent validates ev against the SecurityEvent schema and against how
// it arrived: the stream subject must be the one its source and type give,
// and when the envelope was authenticated, its signer must be the source.
// sender is "" for an event that was not authenticated. Reported events
// go through [CheckReported] instead, and CheckEvent rejects them.
func CheckEvent(subject, sender string, ev *Event) error {
	if err := ev.Validate(); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidEvent, err)
	}
	if IsReported(ev) {
		return fmt.Errorf("%w: type %q is reserved for reports relayed by the monitor",
			ErrInvalidEvent, ev.Type)
	}

	want, err := events.Subject(ev.Source, ev.Type)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidEvent, err)
	}
	if subject != want {
		return fmt.Errorf("%w: subject %q does not match source %q and type %q",
			ErrInvalidEvent, Escape(subject), ev.Source, ev.Type)
	}
	if sender != "" && sender != ev.Source {
		return fmt.Errorf("%w: event signed by %q claims source %q",
			ErrInvalidEvent, sender, ev.Source)
	}

	return nil
}

// CheckReported validates ev as a report that relay (the monitor's
// identity) stored for an agent. Relay must have signed it on its own event
// subject for the type. The event's source and subject must both name the
// reporter, whom the relay authenticated.
func CheckReported(subject, sender, relay string, ev *Event) error {
	if err := ev.Validate(); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidEvent, err)
	}
	if !IsReported(ev) {
		return fmt.Errorf("%w: type %q is not a reported type", ErrInvalidEvent, ev.Type)
	}
	if relay == "" || sender != relay {
		return fmt.Errorf("%w: reported event signed by %q, want the monitor %q",
			ErrInvalidEvent, sender, relay)
	}
	want, err := events.Subject(relay, ev.Type)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidEvent, err)
	}
	if subject != want {
		return fmt.Errorf("%w: subject %q of a reported event, want %q",
			ErrInvalidEvent, Escape(subject), want)
	}
	if ev.Subject != ev.Source {
		return fmt.Errorf("%w: reported event from %q names subject %q",
			ErrInvalidEvent, ev.Source, Escape(ev.Subject))
	}

	return nil
}
