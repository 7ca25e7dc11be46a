// Package domain holds the monitor's detection model: security events with
// what their transport proved, rules, the rule engine with its sliding
// windows and sequences, and threats. It does no I/O. Callers feed it
// observations in stream order and publish the threats it returns.
package domain

import (
	"errors"
	"fmt"

	"github.com/nodexsec/nodex/libs/events"
)

// ErrInvalidEvent marks a stored event that fails the SecurityEvent schema or
// does not fit the subject and envelope it arrived with.
var ErrInvalidEvent = errors.New("monitor: invalid security event")

// Event is one security event, as every NodeX party publishes it on
// nodex.v1.events.<source>.<type>.
type Event = events.SecurityEvent

// CheckEvent validates ev against the SecurityEvent schema and against how
// it arrived: the stream subject must be the one its source and type give,
// and when the envelope was authenticated, its signer must be the source.
// sender is "" for an event that was not authenticated.
func CheckEvent(subject, sender string, ev *Event) error {
	if err := ev.Validate(); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidEvent, err)
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
