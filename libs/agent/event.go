package agent

import (
	"context"
	"fmt"
)

// Event is a security event an agent reports about itself, the body of a
// nodex.v1.monitor.report request. The monitor sets the id, time, source
// and subject to the agent's own identity and stores the type as
// "agent.<Type>", so an agent cannot report for another identity. It
// caps the severity at medium, because an agent's word alone is no alarm.
type Event struct {
	// Type is one token of a-z, 0-9 and _, such as "task_failed";
	// "agent.task_failed" is accepted too.
	Type string `json:"type"`
	// Action and Resource name what the agent did and to what. Each is at
	// most 256 bytes and never a secret.
	Action   string `json:"action,omitempty"`
	Resource string `json:"resource,omitempty"`
	// Status is success (the default) or failure.
	Status string `json:"status,omitempty"`
	// Severity is info (the default), low, medium, high or critical; high
	// and critical are stored as medium with metadata
	// "requested_severity".
	Severity string `json:"severity,omitempty"`
	// Metadata holds at most 16 entries; keys are a-z, 0-9 and _, values
	// at most 512 bytes. Never put secrets here.
	Metadata map[string]string `json:"metadata,omitempty"`
}

// PublishedEvent is the monitor's reply to a stored report: the event id
// in NODEX_EVENTS and the type and severity it was stored with.
type PublishedEvent struct {
	ID       string `json:"id"`
	Type     string `json:"type"`
	Severity string `json:"severity"`
}

// PublishEvent reports ev to the monitor, which stores it in NODEX_EVENTS
// before it replies. Agents cannot publish on nodex.v1.events. themselves,
// so that none can write the audit trail under another identity. The
// monitor limits how often each agent reports (rate_limited past that)
// and rejects a malformed event with invalid_request naming the field.
func (a *Agent) PublishEvent(ctx context.Context, ev Event) (*PublishedEvent, error) {
	var reply PublishedEvent
	if err := a.request(ctx, "agent.publish_event", SubjectReport, RoleMonitor, ev,
		&reply); err != nil {
		return nil, fmt.Errorf("publishing event %q: %w", ev.Type, err)
	}

	return &reply, nil
}
