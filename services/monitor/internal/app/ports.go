// Package app is the monitor's ingest use case: it sheds per-source floods,
// opens and checks each stored event, feeds the rule engine, publishes the
// threats it raises and keeps the dedupe marks that make a restart safe.
package app

import (
	"context"
	"errors"
	"time"

	"github.com/nodexsec/nodex/services/monitor/internal/domain"
)

// Message is one message stored in the events stream.
type Message struct {
	Subject string
	Data    []byte
	Header  map[string][]string

	// Stream, Sequence and MsgID (the Nats-Msg-Id header) locate the
	// message in the stream. The envelope is bound to them.
	Stream   string
	Sequence uint64
	MsgID    string

	// Stored is the time the stream stored the message.
	Stored time.Time

	// Delivered counts deliveries of this message to the monitor's durable
	// consumer; 1 means it cannot have been processed before.
	Delivered uint64
}

// Opened is an event whose envelope an [Opener] verified and decrypted.
type Opened struct {
	Event domain.Event

	// Sender is the authenticated signer, SenderKind its kind (service,
	// agent, operator). Sender is "" when the opener cannot authenticate,
	// and the event's claimed subject is then not trusted.
	Sender     string
	SenderKind string
}

// Opener verifies, decrypts and decodes one stored message. It returns an
// error wrapping [ErrRejected] when the message is not a genuine event
// (forged, badly signed, unknown sender, undecodable). It returns a
// [*Retryable] when opening may succeed later, and any other error when
// opening could not be attempted. The last two retry the message.
type Opener interface {
	Open(ctx context.Context, msg *Message) (Opened, error)
}

// ErrRejected marks a message that is not a genuine event.
var ErrRejected = errors.New("monitor: event rejected")

// Rejection gives the machine-readable reason of a rejected message,
// for example "bad_signature"; openers wrap it with [ErrRejected].
type Rejection struct {
	Reason string
	Err    error
}

// Error implements error.
func (r *Rejection) Error() string { return r.Reason + ": " + r.Err.Error() }

// Unwrap returns [ErrRejected] and the cause.
func (r *Rejection) Unwrap() []error { return []error{ErrRejected, r.Err} }

// Retryable marks an opener failure that may heal, such as a stale registry
// view or a wrap record not replicated yet. The detector retries it and,
// after [DetectorOptions.MaxOpenAttempts] deliveries, rejects the message
// with Reason, so a message that never opens cannot be retried forever.
type Retryable struct {
	Reason string
	Err    error
}

// Error implements error.
func (r *Retryable) Error() string { return r.Reason + ": " + r.Err.Error() }

// Unwrap returns the cause.
func (r *Retryable) Unwrap() error { return r.Err }

// ThreatSink persists one threat revision and returns after the stream
// acknowledged it.
type ThreatSink interface {
	PublishThreat(ctx context.Context, t domain.Threat) error
}

// SeenStore persists the ids of events that became threat evidence, so an
// event redelivered after a restart is not counted twice.
type SeenStore interface {
	// MarkSeen records id.
	MarkSeen(ctx context.Context, id string) error
	// Seen reports whether id was recorded.
	Seen(ctx context.Context, id string) (bool, error)
}

// ThreatStore persists open threats, so updates after a restart go to the
// same threat instead of raising a new one.
type ThreatStore interface {
	SaveThreat(ctx context.Context, t domain.Threat) error
	OpenThreats(ctx context.Context) ([]domain.Threat, error)
}

// Metrics records what the detector does. Implementations must be safe for
// concurrent use and must not block.
type Metrics interface {
	Event(eventType, status string)
	Decision(outcome string)
	Rejected(reason string)
	Threat(threatType string)
	Lag(d time.Duration)
	Shed(source string, n int)
	Duplicate()
	// GroupsDropped counts events not tracked because their rule already
	// kept the maximum number of groups.
	GroupsDropped(n int)
}
