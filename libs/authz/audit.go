package authz

import (
	"context"
	"strings"

	"github.com/nodexsec/nodex/libs/events"
)

// EventType is the security event type of every decision.
const EventType = "authz.decision"

// EventSink returns an [AuditSink] that queues every decision on pub as an
// [EventType] security event. pub publishes asynchronously from a queue, so
// auditing does not bound decision throughput. An event that pub cannot
// persist is counted in [events.Publisher.Lost] and passed to its OnLost
// callback.
func EventSink(pub *events.Publisher) AuditSink {
	if pub == nil {
		panic("authz: EventSink needs a non-nil events.Publisher")
	}

	return eventSink{pub: pub}
}

type eventSink struct {
	pub *events.Publisher
}

var _ AuditSink = eventSink{}

// Record implements [AuditSink].
func (s eventSink) Record(ctx context.Context, in *Input, d *Decision) {
	s.pub.Publish(ctx, DecisionEvent(in, d))
}

// DecisionEvent builds the security event of one decision. Denials are
// failures of medium severity, so that repeated denials of one identity can
// raise a threat. Every field is truncated to the event field limit, because
// a denied input may be oversized.
func DecisionEvent(in *Input, d *Decision) events.SecurityEvent {
	ev := events.SecurityEvent{
		Type:     EventType,
		Time:     in.Context.Time,
		Action:   truncate(in.Action, events.MaxFieldBytes),
		Resource: resourceName(&in.Resource),
		Subject:  truncate(in.Subject.ID, events.MaxFieldBytes),
		Status:   events.StatusSuccess,
		Severity: events.SeverityInfo,
		TraceID:  truncate(in.Context.TraceID, events.MaxFieldBytes),
		Metadata: map[string]string{
			"decision_id":   d.ID,
			"reasons":       truncate(strings.Join(d.Reasons, "; "), events.MaxFieldBytes),
			"revision":      d.Revision,
			"subject_kind":  truncate(in.Subject.Kind, events.MaxFieldBytes),
			"resource_type": truncate(in.Resource.Type, events.MaxFieldBytes),
		},
	}
	if !d.Allow {
		ev.Status = events.StatusFailure
		ev.Severity = events.SeverityMedium
	}
	if len(d.Flags) > 0 {
		ev.Metadata["flags"] = truncate(strings.Join(d.Flags, ","), events.MaxFieldBytes)
	}

	return ev
}

func resourceName(r *Resource) string {
	if r.ID == "" {
		return truncate(r.Type, events.MaxFieldBytes)
	}

	return truncate(r.Type+":"+r.ID, events.MaxFieldBytes)
}

// truncate cuts s to at most n bytes without splitting a UTF-8 sequence.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && s[n]&0xC0 == 0x80 {
		n--
	}

	return s[:n]
}
