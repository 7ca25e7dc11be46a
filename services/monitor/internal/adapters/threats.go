package adapters

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/nodexsec/nodex/libs/bus"
	"github.com/nodexsec/nodex/services/monitor/internal/app"
	"github.com/nodexsec/nodex/services/monitor/internal/domain"
)

// Threat stream facts shared with consumers such as the incident service.
const (
	ThreatStream        = "NODEX_THREATS"
	ThreatSubjectPrefix = "nodex.v1.threats."
)

// ThreatStreamConfig returns the NODEX_THREATS configuration: file storage,
// delete and purge denied, a year of history, and a ten-minute duplicate
// window so that a revision republished after a restart is stored once.
func ThreatStreamConfig(replicas int) jetstream.StreamConfig {
	return jetstream.StreamConfig{
		Name:        ThreatStream,
		Description: "NodeX threats raised by the monitor (append-only)",
		Subjects:    []string{ThreatSubjectPrefix + ">"},
		Storage:     jetstream.FileStorage,
		Retention:   jetstream.LimitsPolicy,
		Discard:     jetstream.DiscardOld,
		MaxAge:      365 * 24 * time.Hour,
		MaxBytes:    1 << 30,
		Duplicates:  10 * time.Minute,
		Replicas:    max(replicas, 1),
		DenyDelete:  true,
		DenyPurge:   true,
	}
}

// EnsureThreatStream creates NODEX_THREATS or updates it to
// [ThreatStreamConfig]. An existing stream never loses replicas (see
// [bus.EnsureStream]).
func EnsureThreatStream(ctx context.Context, js jetstream.JetStream,
	replicas int) (jetstream.Stream, error) {
	return bus.EnsureStream(ctx, js, ThreatStreamConfig(replicas))
}

// StreamThreatSink publishes threats as JSON on nodex.v1.threats.<type>,
// with Nats-Msg-Id set to the threat id and revision.
type StreamThreatSink struct {
	js jetstream.JetStream
}

var _ app.ThreatSink = (*StreamThreatSink)(nil)

// NewStreamThreatSink returns a sink publishing through js.
func NewStreamThreatSink(js jetstream.JetStream) *StreamThreatSink {
	return &StreamThreatSink{js: js}
}

// PublishThreat implements [app.ThreatSink].
func (s *StreamThreatSink) PublishThreat(ctx context.Context, t domain.Threat) error {
	data, err := json.Marshal(t)
	if err != nil {
		return fmt.Errorf("encoding threat: %w", err)
	}
	msg := nats.NewMsg(t.Subject())
	msg.Data = data
	msg.Header.Set(jetstream.MsgIDHeader, t.MsgID())
	msg.Header.Set("Nodex-Schema", "monitor.threat/v1")
	if _, err := s.js.PublishMsg(ctx, msg); err != nil {
		return fmt.Errorf("publishing on %s: %w", t.Subject(), err)
	}

	return nil
}
