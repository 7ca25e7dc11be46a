package bus

import (
	"context"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"
)

// EnsureStream creates the stream, or updates it to cfg if it exists. An
// existing stream keeps its replica count when cfg requests fewer, so a
// service restarted with a lower or default setting never takes
// replication away that an operator or the broker added.
func EnsureStream(ctx context.Context, js jetstream.JetStream,
	cfg jetstream.StreamConfig) (jetstream.Stream, error) {
	replicas, err := keptReplicas(ctx, js, cfg.Name, cfg.Replicas)
	if err != nil {
		return nil, fmt.Errorf("ensuring stream %s: %w", cfg.Name, err)
	}
	cfg.Replicas = replicas
	s, err := js.CreateOrUpdateStream(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("ensuring stream %s: %w", cfg.Name, err)
	}

	return s, nil
}

// EnsureKV creates the KV bucket, or updates it to cfg if it exists. Like
// [EnsureStream], it never lowers the replicas of an existing bucket.
func EnsureKV(ctx context.Context, js jetstream.JetStream,
	cfg jetstream.KeyValueConfig) (jetstream.KeyValue, error) {
	replicas, err := keptReplicas(ctx, js, "KV_"+cfg.Bucket, cfg.Replicas)
	if err != nil {
		return nil, fmt.Errorf("ensuring KV bucket %s: %w", cfg.Bucket, err)
	}
	cfg.Replicas = replicas
	kv, err := js.CreateOrUpdateKeyValue(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("ensuring KV bucket %s: %w", cfg.Bucket, err)
	}

	return kv, nil
}

// EnsureObjectStore creates the object store, or updates it to cfg if it
// exists. Like [EnsureStream], it never lowers the replicas of an existing
// store.
func EnsureObjectStore(ctx context.Context, js jetstream.JetStream,
	cfg jetstream.ObjectStoreConfig) (jetstream.ObjectStore, error) {
	replicas, err := keptReplicas(ctx, js, "OBJ_"+cfg.Bucket, cfg.Replicas)
	if err != nil {
		return nil, fmt.Errorf("ensuring object store %s: %w", cfg.Bucket, err)
	}
	cfg.Replicas = replicas
	os, err := js.CreateOrUpdateObjectStore(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("ensuring object store %s: %w", cfg.Bucket, err)
	}

	return os, nil
}

// keptReplicas returns the replica count to configure on stream: want
// (zero means 1), or the stream's current count when that is higher.
func keptReplicas(ctx context.Context, js jetstream.JetStream, stream string, want int) (int, error) {
	want = max(want, 1)
	s, err := js.Stream(ctx, stream)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return want, nil
	}
	if err != nil {
		return 0, fmt.Errorf("reading the replicas of stream %s: %w", stream, err)
	}

	return max(want, s.CachedInfo().Config.Replicas), nil
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
