package domain

import (
	"strings"
	"time"
)

// Observation is one event body with what the transport proved about it.
type Observation struct {
	Event Event

	// Sender is the identity that signed the envelope, or "" when the event
	// could not be authenticated.
	Sender string

	// SenderKind is the signer's kind (service, agent, operator), "" when
	// Sender is "".
	SenderKind string

	// Origin names where the message came from on the transport (for
	// example "subject:nodex.v1.events.codesec.finding"). It is set for
	// every observation and is the only attribution of a forged event.
	Origin string

	// At is the time the stream stored the message. Windows and sequences
	// use it, not the event's own time, because a publisher chooses the
	// latter.
	At time.Time
}

// Identity returns the identity the event is about when the transport
// vouches for it, or "". A service's or operator's signed statement about an
// identity is trusted, and so is an agent's statement about itself. The
// subject named by an unauthenticated event, or by an agent about another
// identity, is not trusted, so a forger cannot frame someone else.
func (o *Observation) Identity() string {
	switch {
	case o.Sender == "":
		return ""
	case o.SenderKind == "service" || o.SenderKind == "operator":
		return o.Event.Subject
	case o.Event.Subject == o.Sender:
		return o.Sender
	default:
		return ""
	}
}

// Field returns the value of a named field for matching and grouping. Names:
// id, type, source, action, resource, status, severity, trace_id, subject
// (the claimed subject, unauthenticated), identity (see [Observation.Identity]),
// sender, sender_kind, origin, and metadata.<key>. An unknown name yields "".
func (o *Observation) Field(name string) string {
	ev := &o.Event
	switch name {
	case "id":
		return ev.ID
	case "type":
		return ev.Type
	case "source":
		return ev.Source
	case "action":
		return ev.Action
	case "resource":
		return ev.Resource
	case "status":
		return ev.Status
	case "severity":
		return ev.Severity
	case "trace_id":
		return ev.TraceID
	case "subject":
		return ev.Subject
	case "identity":
		return o.Identity()
	case "sender":
		return o.Sender
	case "sender_kind":
		return o.SenderKind
	case "origin":
		return o.Origin
	}
	if key, ok := strings.CutPrefix(name, "metadata."); ok {
		return ev.Metadata[key]
	}

	return ""
}
