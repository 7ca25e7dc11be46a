// Package kvstore keeps the keyvault's records in JetStream KV buckets:
// keys (with their sealed versions), usage counters, last-use times and the
// sealed fingerprint key in one bucket, and the published fingerprints in
// another that other services may read.
package kvstore

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/nodexsec/nodex/libs/bus"
	"github.com/nodexsec/nodex/services/keyvault/api"
	"github.com/nodexsec/nodex/services/keyvault/internal/domain"
)

// Bucket is the KV bucket holding the keyvault's own records. Every value
// in it is metadata or sealed under the KEK, never a key value.
const Bucket = "NODEX_KEYVAULT"

// Record key prefixes in [Bucket].
const (
	prefixKey   = "key."
	prefixUsage = "usage."
	prefixUsed  = "used."
	prefixMeta  = "meta."
)

// RequestBucket records the envelope ids of requests that change state, so
// a replayed request that reaches another replica changes nothing.
const RequestBucket = "NODEX_KEYVAULT_REQUESTS"

// RequestTTL is how long a request id stays recorded. It exceeds the
// envelope freshness window (30 s by default in libs/envelope), after which
// the envelope check itself rejects a replay.
const RequestTTL = 5 * time.Minute

// Store implements the keyvault's storage on JetStream KV.
type Store struct {
	kv       jetstream.KeyValue
	fps      jetstream.KeyValue
	requests jetstream.KeyValue
}

// Options configure the buckets.
type Options struct {
	// Replicas is the bucket replication factor; zero means 1.
	Replicas int
}

// Open creates or updates the three buckets. History is 1 so that a purge
// or an update leaves no older sealed copy in the bucket. A bucket keeps
// more replicas than o.Replicas if it has them (see [bus.EnsureKV]).
func Open(ctx context.Context, js jetstream.JetStream, o Options) (*Store, error) {
	kv, err := bus.EnsureKV(ctx, js, jetstream.KeyValueConfig{
		Bucket:      Bucket,
		Description: "NodeX keyvault: sealed provider keys and usage",
		History:     1,
		Storage:     jetstream.FileStorage,
		Replicas:    max(o.Replicas, 1),
	})
	if err != nil {
		return nil, err
	}
	fps, err := bus.EnsureKV(ctx, js, jetstream.KeyValueConfig{
		Bucket:      api.FingerprintBucket,
		Description: "NodeX keyvault: HMAC fingerprints of active key values",
		History:     1,
		Storage:     jetstream.FileStorage,
		Replicas:    max(o.Replicas, 1),
	})
	if err != nil {
		return nil, err
	}

	requests, err := bus.EnsureKV(ctx, js, jetstream.KeyValueConfig{
		Bucket:      RequestBucket,
		Description: "NodeX keyvault: ids of state-changing requests, against replays",
		TTL:         RequestTTL,
		Storage:     jetstream.FileStorage,
		Replicas:    max(o.Replicas, 1),
	})
	if err != nil {
		return nil, err
	}

	return &Store{kv: kv, fps: fps, requests: requests}, nil
}

// RecordRequest records a request id and reports whether it was new.
func (s *Store) RecordRequest(ctx context.Context, id string) (bool, error) {
	return bus.RecordOnce(ctx, s.requests, "req."+id, nil)
}

// NameToken encodes a key name as one KV key token: '.' becomes '=',
// which the name rule does not allow, so the mapping is reversible.
func NameToken(name string) string { return strings.ReplaceAll(name, ".", "=") }

func agentToken(id string) string { return base64.RawURLEncoding.EncodeToString([]byte(id)) }

// GetKey returns a key and the revision to pass to [Store.UpdateKey].
func (s *Store) GetKey(ctx context.Context, name string) (*domain.Key, uint64, error) {
	var k domain.Key
	rev, err := s.get(ctx, prefixKey+NameToken(name), &k)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil, 0, fmt.Errorf("%w: %q", domain.ErrKeyNotFound, name)
	}
	if err != nil {
		return nil, 0, fmt.Errorf("loading key %q: %w", name, err)
	}

	return &k, rev, nil
}

// CreateKey stores a new key, failing with [domain.ErrKeyExists] if the
// name is taken.
func (s *Store) CreateKey(ctx context.Context, k *domain.Key) error {
	data, err := json.Marshal(k)
	if err != nil {
		return fmt.Errorf("encoding key %q: %w", k.Name, err)
	}
	_, err = s.kv.Create(ctx, prefixKey+NameToken(k.Name), data)
	if errors.Is(err, jetstream.ErrKeyExists) {
		return fmt.Errorf("%w: %q", domain.ErrKeyExists, k.Name)
	}
	if err != nil {
		return fmt.Errorf("creating key %q: %w", k.Name, err)
	}

	return nil
}

// UpdateKey replaces a key if it is still at revision rev, and otherwise
// fails with [domain.ErrConflict].
func (s *Store) UpdateKey(ctx context.Context, k *domain.Key, rev uint64) error {
	data, err := json.Marshal(k)
	if err != nil {
		return fmt.Errorf("encoding key %q: %w", k.Name, err)
	}
	if _, err := s.kv.Update(ctx, prefixKey+NameToken(k.Name), data, rev); err != nil {
		return fmt.Errorf("updating key %q: %w", k.Name, mapCAS(err))
	}

	return nil
}

// DeleteKey purges a key record and its last-use entry. The purge removes
// every stored revision of the record, and with it the wrapped data keys.
func (s *Store) DeleteKey(ctx context.Context, name string) error {
	if err := s.kv.Purge(ctx, prefixKey+NameToken(name)); err != nil {
		return fmt.Errorf("purging key %q: %w", name, err)
	}
	if err := s.kv.Purge(ctx, prefixUsed+NameToken(name)); err != nil {
		return fmt.Errorf("purging last use of key %q: %w", name, err)
	}

	return nil
}

// ListKeys returns every key record.
func (s *Store) ListKeys(ctx context.Context) ([]*domain.Key, error) {
	lister, err := s.kv.ListKeysFiltered(ctx, prefixKey+">")
	if err != nil {
		return nil, fmt.Errorf("listing keys: %w", err)
	}
	var out []*domain.Key
	for kvKey := range lister.Keys() {
		var k domain.Key
		_, err := s.get(ctx, kvKey, &k)
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			continue // deleted since the listing
		}
		if err != nil {
			return nil, fmt.Errorf("loading %s: %w", kvKey, err)
		}
		out = append(out, &k)
	}

	return out, nil
}

// GetUsage returns an agent's usage and its revision; an agent without
// usage gets a zero Usage and revision 0.
func (s *Store) GetUsage(ctx context.Context, agent string) (*domain.Usage, uint64, error) {
	var u domain.Usage
	rev, err := s.get(ctx, prefixUsage+agentToken(agent), &u)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return &u, 0, nil
	}
	if err != nil {
		return nil, 0, fmt.Errorf("loading usage of %q: %w", agent, err)
	}

	return &u, rev, nil
}

// PutUsage writes an agent's usage if it is still at revision rev (0: not
// yet stored), and otherwise fails with [domain.ErrConflict].
func (s *Store) PutUsage(ctx context.Context, agent string, u *domain.Usage, rev uint64) error {
	data, err := json.Marshal(u)
	if err != nil {
		return fmt.Errorf("encoding usage of %q: %w", agent, err)
	}
	key := prefixUsage + agentToken(agent)
	if rev == 0 {
		_, err = s.kv.Create(ctx, key, data)
	} else {
		_, err = s.kv.Update(ctx, key, data, rev)
	}
	if err != nil {
		return fmt.Errorf("storing usage of %q: %w", agent, mapCAS(err))
	}

	return nil
}

// SetLastUsed records the time of a key's last successful retrieve.
func (s *Store) SetLastUsed(ctx context.Context, name string, t time.Time) error {
	v := strconv.FormatInt(t.UnixNano(), 10)
	if _, err := s.kv.PutString(ctx, prefixUsed+NameToken(name), v); err != nil {
		return fmt.Errorf("storing last use of key %q: %w", name, err)
	}

	return nil
}

// LastUsed returns a key's last use, zero if never used.
func (s *Store) LastUsed(ctx context.Context, name string) (time.Time, error) {
	e, err := s.kv.Get(ctx, prefixUsed+NameToken(name))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return time.Time{}, nil
	}
	if err != nil {
		return time.Time{}, fmt.Errorf("loading last use of key %q: %w", name, err)
	}
	n, err := strconv.ParseInt(string(e.Value()), 10, 64)
	if err != nil {
		return time.Time{}, fmt.Errorf("parsing last use of key %q: %w", name, err)
	}

	return time.Unix(0, n), nil
}

// GetMeta loads the service record name into v; it wraps
// [domain.ErrKeyNotFound] when absent.
func (s *Store) GetMeta(ctx context.Context, name string, v any) error {
	_, err := s.get(ctx, prefixMeta+name, v)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return fmt.Errorf("%w: record %s", domain.ErrKeyNotFound, name)
	}

	return err
}

// CreateMeta stores a service record once; a second call fails with
// [domain.ErrKeyExists], so concurrent replicas agree on one value.
func (s *Store) CreateMeta(ctx context.Context, name string, v any) error {
	data, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encoding record %s: %w", name, err)
	}
	_, err = s.kv.Create(ctx, prefixMeta+name, data)
	if errors.Is(err, jetstream.ErrKeyExists) {
		return fmt.Errorf("%w: record %s", domain.ErrKeyExists, name)
	}
	if err != nil {
		return fmt.Errorf("creating record %s: %w", name, err)
	}

	return nil
}

// UpdateMeta replaces a service record unconditionally.
func (s *Store) UpdateMeta(ctx context.Context, name string, v any) error {
	data, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encoding record %s: %w", name, err)
	}
	if _, err := s.kv.Put(ctx, prefixMeta+name, data); err != nil {
		return fmt.Errorf("storing record %s: %w", name, err)
	}

	return nil
}

// PutFingerprint publishes a fingerprint of one key version.
func (s *Store) PutFingerprint(ctx context.Context, fp api.Fingerprint) error {
	data, err := json.Marshal(fp)
	if err != nil {
		return fmt.Errorf("encoding fingerprint of %q: %w", fp.Name, err)
	}
	if _, err := s.fps.Put(ctx, fingerprintKey(fp.Name, fp.Version), data); err != nil {
		return fmt.Errorf("publishing fingerprint of %q version %d: %w", fp.Name, fp.Version, err)
	}

	return nil
}

// DeleteFingerprint withdraws the fingerprint of one key version.
func (s *Store) DeleteFingerprint(ctx context.Context, name string, version int) error {
	if err := s.fps.Purge(ctx, fingerprintKey(name, version)); err != nil {
		return fmt.Errorf("withdrawing fingerprint of %q version %d: %w", name, version, err)
	}

	return nil
}

// FingerprintExists reports whether a version's fingerprint is published.
func (s *Store) FingerprintExists(ctx context.Context, name string, version int) (bool, error) {
	_, err := s.fps.Get(ctx, fingerprintKey(name, version))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("loading fingerprint of %q version %d: %w", name, version, err)
	}

	return true, nil
}

func fingerprintKey(name string, version int) string {
	return "fp." + NameToken(name) + "." + strconv.Itoa(version)
}

func (s *Store) get(ctx context.Context, key string, v any) (uint64, error) {
	e, err := s.kv.Get(ctx, key)
	if err != nil {
		return 0, err
	}
	if err := json.Unmarshal(e.Value(), v); err != nil {
		return 0, fmt.Errorf("decoding %s: %w", key, err)
	}

	return e.Revision(), nil
}

func mapCAS(err error) error {
	var apiErr *jetstream.APIError
	if errors.As(err, &apiErr) &&
		(apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence ||
			apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant) {
		return fmt.Errorf("%w: %w", domain.ErrConflict, err)
	}
	if errors.Is(err, jetstream.ErrKeyExists) {
		return fmt.Errorf("%w: %w", domain.ErrConflict, err)
	}

	return err
}
