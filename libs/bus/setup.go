package bus

import (
	"context"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"
)

// EnsureStream creates the stream, or updates it to cfg if it exists.
func EnsureStream(ctx context.Context, js jetstream.JetStream,
	cfg jetstream.StreamConfig) (jetstream.Stream, error) {
	s, err := js.CreateOrUpdateStream(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("ensuring stream %s: %w", cfg.Name, err)
	}

	return s, nil
}

// EnsureKV creates the KV bucket, or updates it to cfg if it exists.
func EnsureKV(ctx context.Context, js jetstream.JetStream,
	cfg jetstream.KeyValueConfig) (jetstream.KeyValue, error) {
	kv, err := js.CreateOrUpdateKeyValue(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("ensuring KV bucket %s: %w", cfg.Bucket, err)
	}

	return kv, nil
}

// EnsureObjectStore creates the object store, or updates it to cfg if it exists.
func EnsureObjectStore(ctx context.Context, js jetstream.JetStream,
	cfg jetstream.ObjectStoreConfig) (jetstream.ObjectStore, error) {
	os, err := js.CreateOrUpdateObjectStore(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("ensuring object store %s: %w", cfg.Bucket, err)
	}

	return os, nil
}

// RecordOnce records key in kv with a create-only write and reports whether
// it was new. A handler that changes state puts the request id in key (or in
// the compare-and-set of its own record). Then a replay that reaches another
// replica, whose local replay cache has not seen it, changes nothing. The
// TTL of kv must exceed the envelope window.
func RecordOnce(ctx context.Context, kv jetstream.KeyValue, key string, value []byte) (bool, error) {
	_, err := kv.Create(ctx, key, value)
	switch {
	case err == nil:
		return true, nil
	case isKeyExists(err):
		return false, nil
	}

	return false, fmt.Errorf("recording %s in %s: %w", key, kv.Bucket(), err)
}

func isKeyExists(err error) bool { return errors.Is(err, jetstream.ErrKeyExists) }
