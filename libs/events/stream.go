package events

import (
	"context"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/nodexsec/nodex/libs/bus"
)

// StreamName is the JetStream stream that stores every security event.
const StreamName = "NODEX_EVENTS"

// Default retention of NODEX_EVENTS. An operator sizes these for the
// deployment; the defaults keep a month of a busy development system.
const (
	DefaultMaxAge   = 30 * 24 * time.Hour
	DefaultMaxBytes = 1 << 30
	// DefaultDuplicates is the window in which JetStream drops a publish whose
	// Nats-Msg-Id it has seen, so a retried publish stores one event.
	DefaultDuplicates = 2 * time.Minute
)

// StreamOptions size the stream. Zero fields take the defaults above.
type StreamOptions struct {
	MaxAge   time.Duration
	MaxBytes int64
	Replicas int
}

// StreamConfig returns the NODEX_EVENTS configuration: file storage,
// delete and purge denied, limits retention that discards the oldest events
// once MaxAge or MaxBytes is reached. Discarding old rather than new keeps the
// services that must audit before acting available when the stream is full;
// per-identity publish limits keep one party from filling it.
func StreamConfig(o StreamOptions) jetstream.StreamConfig {
	if o.MaxAge == 0 {
		o.MaxAge = DefaultMaxAge
	}
	if o.MaxBytes == 0 {
		o.MaxBytes = DefaultMaxBytes
	}
	if o.Replicas == 0 {
		o.Replicas = 1
	}

	return jetstream.StreamConfig{
		Name:        StreamName,
		Description: "NodeX security events (append-only)",
		Subjects:    []string{SubjectPrefix + ">"},
		Storage:     jetstream.FileStorage,
		Retention:   jetstream.LimitsPolicy,
		Discard:     jetstream.DiscardOld,
		MaxAge:      o.MaxAge,
		MaxBytes:    o.MaxBytes,
		Duplicates:  DefaultDuplicates,
		Replicas:    o.Replicas,
		DenyDelete:  true,
		DenyPurge:   true,
	}
}

// EnsureStream creates NODEX_EVENTS, or updates it to the configuration of
// o when it exists. An existing stream keeps a higher replica count than o
// requests (see [bus.EnsureStream]). Delete and purge stay denied, because
// [StreamConfig] always sets both.
func EnsureStream(ctx context.Context, js jetstream.JetStream, o StreamOptions) (jetstream.Stream, error) {
	s, err := bus.EnsureStream(ctx, js, StreamConfig(o))
	if err != nil {
		return nil, fmt.Errorf("events: %w", err)
	}

	return s, nil
}
