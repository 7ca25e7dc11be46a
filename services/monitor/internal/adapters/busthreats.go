package adapters

import (
	"context"
	"fmt"

	"github.com/nodexsec/nodex/libs/bus"
	"github.com/nodexsec/nodex/libs/events"
	"github.com/nodexsec/nodex/services/monitor/internal/app"
	"github.com/nodexsec/nodex/services/monitor/internal/domain"
)

// BusThreatSink publishes threats sealed to the audit role through libs/bus,
// which waits for the stream's acknowledgement. Each publish is a new
// envelope with its own Nats-Msg-Id, so a revision republished after a crash
// is stored twice. Consumers keep the highest revision of each threat id.
type BusThreatSink struct {
	Client *bus.Client
}

var _ app.ThreatSink = BusThreatSink{}

// PublishThreat implements [app.ThreatSink].
func (s BusThreatSink) PublishThreat(ctx context.Context, t domain.Threat) error {
	if err := s.Client.Publish(ctx, t.Subject(), events.AudienceRole, t); err != nil {
		return fmt.Errorf("publishing threat: %w", err)
	}

	return nil
}
