package adapters

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/nodexsec/nodex/libs/bus"
	"github.com/nodexsec/nodex/services/monitor/internal/app"
	"github.com/nodexsec/nodex/services/monitor/internal/domain"
)

// KV bucket names.
const (
	SeenBucket    = "MONITOR_SEEN"
	ThreatsBucket = "MONITOR_THREATS"
)

// KVSeenStore keeps the ids of events that became threat evidence in a
// JetStream KV bucket whose entries expire after the bucket's TTL.
type KVSeenStore struct {
	kv jetstream.KeyValue
}

var _ app.SeenStore = (*KVSeenStore)(nil)

// NewKVSeenStore creates or updates the MONITOR_SEEN bucket with ttl. An
// existing bucket never loses replicas (see [bus.EnsureKV]).
func NewKVSeenStore(ctx context.Context, js jetstream.JetStream, ttl time.Duration,
	replicas int) (*KVSeenStore, error) {
	kv, err := bus.EnsureKV(ctx, js, jetstream.KeyValueConfig{
		Bucket:      SeenBucket,
		Description: "ids of security events that became threat evidence",
		TTL:         ttl,
		History:     1,
		Storage:     jetstream.FileStorage,
		Replicas:    max(replicas, 1),
	})
	if err != nil {
		return nil, err
	}

	return &KVSeenStore{kv: kv}, nil
}

// MarkSeen implements [app.SeenStore].
func (s *KVSeenStore) MarkSeen(ctx context.Context, id string) error {
	if _, err := s.kv.Put(ctx, kvKey(id), nil); err != nil {
		return fmt.Errorf("putting seen mark: %w", err)
	}

	return nil
}

// Seen implements [app.SeenStore].
func (s *KVSeenStore) Seen(ctx context.Context, id string) (bool, error) {
	_, err := s.kv.Get(ctx, kvKey(id))
	switch {
	case errors.Is(err, jetstream.ErrKeyNotFound):
		return false, nil
	case err != nil:
		return false, fmt.Errorf("getting seen mark: %w", err)
	}

	return true, nil
}

// kvKey maps an event id to a valid KV key. Event ids are UUIDs, which are
// valid keys; anything else is hex encoded so it cannot address another key.
func kvKey(id string) string {
	for _, c := range []byte(id) {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-') {
			return fmt.Sprintf("x%x", id)
		}
	}

	return id
}

// KVThreatStore keeps the latest revision of each open threat in a
// JetStream KV bucket. Entries expire after the bucket's TTL, which must be
// at least the longest rule dedupe time.
type KVThreatStore struct {
	kv jetstream.KeyValue
}

var _ app.ThreatStore = (*KVThreatStore)(nil)

// NewKVThreatStore creates or updates the MONITOR_THREATS bucket with ttl.
// An existing bucket never loses replicas (see [bus.EnsureKV]).
func NewKVThreatStore(ctx context.Context, js jetstream.JetStream, ttl time.Duration,
	replicas int) (*KVThreatStore, error) {
	kv, err := bus.EnsureKV(ctx, js, jetstream.KeyValueConfig{
		Bucket:      ThreatsBucket,
		Description: "latest revision of each open threat",
		TTL:         ttl,
		History:     1,
		Storage:     jetstream.FileStorage,
		Replicas:    max(replicas, 1),
	})
	if err != nil {
		return nil, err
	}

	return &KVThreatStore{kv: kv}, nil
}

// SaveThreat implements [app.ThreatStore].
func (s *KVThreatStore) SaveThreat(ctx context.Context, t domain.Threat) error {
	data, err := json.Marshal(t)
	if err != nil {
		return fmt.Errorf("encoding threat: %w", err)
	}
	if _, err := s.kv.Put(ctx, kvKey(t.ID), data); err != nil {
		return fmt.Errorf("putting threat: %w", err)
	}

	return nil
}

// OpenThreats implements [app.ThreatStore].
func (s *KVThreatStore) OpenThreats(ctx context.Context) ([]domain.Threat, error) {
	lister, err := s.kv.ListKeys(ctx)
	if err != nil {
		return nil, fmt.Errorf("listing threats: %w", err)
	}
	defer lister.Stop()

	var out []domain.Threat
	for key := range lister.Keys() {
		entry, err := s.kv.Get(ctx, key)
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("getting threat %s: %w", key, err)
		}
		var t domain.Threat
		if err := json.Unmarshal(entry.Value(), &t); err != nil {
			return nil, fmt.Errorf("decoding threat %s: %w", key, err)
		}
		out = append(out, t)
	}

	return out, nil
}
