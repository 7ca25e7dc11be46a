package bus

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/nodexsec/nodex/libs/envelope"
)

// DefaultWrapMaxAge bounds how long wrap records live. Stored wraps give no
// forward secrecy: anyone who later obtains a recipient's private key and the
// wrap can read every message of that epoch. Past this age, messages of the
// epoch can no longer be opened, so stream readers must keep up within it.
const DefaultWrapMaxAge = 7 * 24 * time.Hour

// WrapStore is the [envelope.WrapStore] over the JetStream KV bucket
// [envelope.WrapBucket]. Create uses the KV create operation, which the
// server refuses when the key exists, and returns after the stream ack.
type WrapStore struct {
	kv jetstream.KeyValue
}

var _ envelope.WrapStore = (*WrapStore)(nil)

// NewWrapStore binds to the wrap bucket, creating it with maxAge (zero
// means [DefaultWrapMaxAge]) if it does not exist. An existing bucket keeps
// its configuration: parties without the right to manage it can still bind.
func NewWrapStore(ctx context.Context, js jetstream.JetStream, maxAge time.Duration) (*WrapStore, error) {
	if maxAge <= 0 {
		maxAge = DefaultWrapMaxAge
	}
	kv, err := js.KeyValue(ctx, envelope.WrapBucket)
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		kv, err = js.CreateKeyValue(ctx, jetstream.KeyValueConfig{
			Bucket:      envelope.WrapBucket,
			Description: "NodeX content-key wraps, one per sender, epoch and recipient",
			History:     1,
			TTL:         maxAge,
			Storage:     jetstream.FileStorage,
		})
	}
	if err != nil {
		return nil, fmt.Errorf("binding KV bucket %s: %w", envelope.WrapBucket, err)
	}

	return &WrapStore{kv: kv}, nil
}

// Create implements [envelope.WrapStore].
func (s *WrapStore) Create(ctx context.Context, key envelope.WrapKey, wrap []byte) error {
	if _, err := s.kv.Create(ctx, key.String(), wrap); err != nil {
		if errors.Is(err, jetstream.ErrKeyExists) {
			return fmt.Errorf("creating wrap %s: %w", key, envelope.ErrWrapExists)
		}
		return fmt.Errorf("creating wrap %s: %w", key, err)
	}

	return nil
}

// Get implements [envelope.WrapStore].
func (s *WrapStore) Get(ctx context.Context, key envelope.WrapKey) ([]byte, error) {
	e, err := s.kv.Get(ctx, key.String())
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil, fmt.Errorf("getting wrap %s: %w", key, envelope.ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("getting wrap %s: %w", key, err)
	}

	return e.Value(), nil
}
