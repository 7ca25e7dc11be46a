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
	// missWait bounds how long Get retries a key that is not found.
	missWait time.Duration
}

var _ envelope.WrapStore = (*WrapStore)(nil)

// DefaultWrapMissWait is how long [WrapStore.Get] keeps retrying a wrap
// that is not found. KV reads are direct gets, which any replica of the
// bucket may serve, and a follower can lag the acknowledgement the
// sender waited for by a few milliseconds (more on a loaded host). Only
// an authenticated sender can make a receiver look a wrap up, because the
// signature is checked first.
const DefaultWrapMissWait = 2 * time.Second

// WrapStoreOptions configure [OpenWrapStore]. The zero value takes the
// defaults.
type WrapStoreOptions struct {
	// MaxAge is the TTL of wrap records; zero means [DefaultWrapMaxAge].
	MaxAge time.Duration
	// Replicas is the replica count of the bucket if this call creates
	// it; zero means 1.
	Replicas int
	// MissWait bounds the retries of a wrap that is not found; zero means
	// [DefaultWrapMissWait], negative means no retry.
	MissWait time.Duration
}

// NewWrapStore is [OpenWrapStore] with only MaxAge set.
func NewWrapStore(ctx context.Context, js jetstream.JetStream, maxAge time.Duration) (*WrapStore, error) {
	return OpenWrapStore(ctx, js, WrapStoreOptions{MaxAge: maxAge})
}

// OpenWrapStore binds to the wrap bucket, creating it with o.MaxAge and
// o.Replicas if it does not exist. An existing bucket keeps its
// configuration, so a restarted party never lowers its replication, and
// parties without the right to manage the bucket can still bind. In a
// cluster the broker creates the bucket and raises its replicas.
func OpenWrapStore(ctx context.Context, js jetstream.JetStream, o WrapStoreOptions) (*WrapStore, error) {
	if o.MaxAge <= 0 {
		o.MaxAge = DefaultWrapMaxAge
	}
	switch {
	case o.MissWait == 0:
		o.MissWait = DefaultWrapMissWait
	case o.MissWait < 0:
		o.MissWait = 0
	}
	want := max(o.Replicas, 1)
	kv, err := js.KeyValue(ctx, envelope.WrapBucket)
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		kv, err = js.CreateKeyValue(ctx, wrapBucketConfig(o.MaxAge, want))
		if errors.Is(err, jetstream.ErrBucketExists) {
			// Another party created it first, perhaps with other settings.
			kv, err = js.KeyValue(ctx, envelope.WrapBucket)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("binding KV bucket %s: %w", envelope.WrapBucket, err)
	}

	return &WrapStore{kv: kv, missWait: o.MissWait}, nil
}

// wrapBucketConfig is the configuration of a new wrap bucket.
func wrapBucketConfig(maxAge time.Duration, replicas int) jetstream.KeyValueConfig {
	return jetstream.KeyValueConfig{
		Bucket:      envelope.WrapBucket,
		Description: "NodeX content-key wraps, one per sender, epoch and recipient",
		History:     1,
		TTL:         maxAge,
		Storage:     jetstream.FileStorage,
		Replicas:    replicas,
	}
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

// Get implements [envelope.WrapStore]. A key that is not found is read
// again with a growing pause until the store's miss wait has passed, so a
// lagging replica does not turn a valid message into a rejected one.
func (s *WrapStore) Get(ctx context.Context, key envelope.WrapKey) ([]byte, error) {
	deadline := time.Now().Add(s.missWait)
	pause := 10 * time.Millisecond
	for {
		e, err := s.kv.Get(ctx, key.String())
		if err == nil {
			return e.Value(), nil
		}
		if !errors.Is(err, jetstream.ErrKeyNotFound) {
			return nil, fmt.Errorf("getting wrap %s: %w", key, err)
		}
		if !time.Now().Add(pause).Before(deadline) {
			return nil, fmt.Errorf("getting wrap %s: %w", key, envelope.ErrNotFound)
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("getting wrap %s: %w", key, envelope.ErrNotFound)
		case <-time.After(pause):
		}
		pause = min(2*pause, 200*time.Millisecond)
	}
}
