package bus

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"sync/atomic"

	"github.com/nodexsec/nodex/libs/envelope"
	"github.com/nodexsec/nodex/libs/events"
)

// RejectedEventType is the security event type of a rejected envelope.
const RejectedEventType = "envelope.rejected"

// RejectionEvents publishes envelope rejections as security events. The
// codec needs its hook before the Client exists, and the events publisher
// needs the Client, so the publisher is attached afterwards with
// SetPublisher; rejections before that are counted in the next event.
type RejectionEvents struct {
	pub     atomic.Pointer[events.Publisher]
	dropped atomic.Uint64
}

// SetPublisher attaches the publisher that receives later rejections.
func (r *RejectionEvents) SetPublisher(p *events.Publisher) { r.pub.Store(p) }

// Hook is the envelope.Config.OnReject function. The codec already rate
// limits it; Publish queues without blocking.
func (r *RejectionEvents) Hook(rej envelope.Rejection) {
	p := r.pub.Load()
	if p == nil {
		r.dropped.Add(1 + rej.Suppressed)
		return
	}
	rej.Suppressed += r.dropped.Swap(0)
	p.Publish(context.Background(), RejectionEvent(rej))
}

// RejectionEvent returns the security event for rej. Its Subject is empty:
// a rejected message is not attributed to the sender it claims. The
// metadata holds the reason and the count of rejections the rate limit
// suppressed before this one.
func RejectionEvent(rej envelope.Rejection) events.SecurityEvent {
	return events.SecurityEvent{
		Type:     RejectedEventType,
		Time:     rej.Time,
		Action:   "open",
		Resource: "subject:" + rej.Subject,
		Status:   events.StatusFailure,
		Severity: rejectionSeverity(rej.Reason),
		Metadata: map[string]string{
			"reason":     reasonToken(rej.Reason),
			"suppressed": strconv.FormatUint(rej.Suppressed, 10),
		},
	}
}

// rejectionSeverity rates reasons that need a key or a forgery attempt
// higher than those that clock skew, staleness or a slow reader explain.
func rejectionSeverity(reason error) string {
	switch {
	case errors.Is(reason, envelope.ErrCompromisedKey), errors.Is(reason, envelope.ErrKeyCommitment):
		return events.SeverityHigh
	case errors.Is(reason, envelope.ErrBadSignature), errors.Is(reason, envelope.ErrReplay),
		errors.Is(reason, envelope.ErrWrapInvalid), errors.Is(reason, envelope.ErrDecrypt),
		errors.Is(reason, envelope.ErrSenderRevoked), errors.Is(reason, envelope.ErrSubjectMismatch):
		return events.SeverityMedium
	}

	return events.SeverityLow
}

// reasonToken turns "envelope: bad signature" into "bad_signature".
func reasonToken(reason error) string {
	if reason == nil {
		return "unknown"
	}
	s := strings.TrimPrefix(reason.Error(), "envelope: ")

	return strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9':
			return r
		}
		return '_'
	}, strings.ToLower(s))
}
