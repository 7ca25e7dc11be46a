// Package kvstore keeps the policy set and role data in the NODEX_POLICY
// JetStream key-value bucket that every deciding service watches.
package kvstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/nodexsec/nodex/libs/authz"
	"github.com/nodexsec/nodex/libs/bus"
	"github.com/nodexsec/nodex/services/policy/internal/app"
)

// Store implements [app.Store] on the policy bucket.
type Store struct {
	kv jetstream.KeyValue
}

var _ app.Store = (*Store)(nil)

// Open creates or updates the policy bucket, keeping history revisions per
// key, and returns a Store on it.
func Open(ctx context.Context, js jetstream.JetStream, history int) (*Store, error) {
	kv, err := bus.EnsureKV(ctx, js, jetstream.KeyValueConfig{
		Bucket:      authz.KVBucket,
		Description: "NodeX policy set and role data",
		History:     uint8(history),
		Storage:     jetstream.FileStorage,
	})
	if err != nil {
		return nil, fmt.Errorf("opening bucket %s: %w", authz.KVBucket, err)
	}

	return &Store{kv: kv}, nil
}

// KV returns the bucket, for an engine's [authz.WatchKV].
func (s *Store) KV() jetstream.KeyValue { return s.kv }

// RBAC implements [app.Store].
func (s *Store) RBAC(ctx context.Context) (authz.RBAC, uint64, error) {
	e, err := s.kv.Get(ctx, authz.KeyRBAC)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return authz.RBAC{}, 0, app.ErrNotFound
	}
	if err != nil {
		return authz.RBAC{}, 0, fmt.Errorf("getting %s: %w", authz.KeyRBAC, err)
	}

	var r authz.RBAC
	if err := json.Unmarshal(e.Value(), &r); err != nil {
		return authz.RBAC{}, 0, fmt.Errorf("decoding %s revision %d: %w",
			authz.KeyRBAC, e.Revision(), err)
	}

	return r, e.Revision(), nil
}

// UpdateRBAC implements [app.Store].
func (s *Store) UpdateRBAC(ctx context.Context, r authz.RBAC, rev uint64) (uint64, error) {
	b, err := json.Marshal(r)
	if err != nil {
		return 0, fmt.Errorf("encoding role data: %w", err)
	}

	var newRev uint64
	if rev == 0 {
		newRev, err = s.kv.Create(ctx, authz.KeyRBAC, b)
	} else {
		newRev, err = s.kv.Update(ctx, authz.KeyRBAC, b, rev)
	}
	if errors.Is(err, jetstream.ErrKeyExists) || errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
		return 0, fmt.Errorf("%w: %s changed after revision %d", app.ErrConflict,
			authz.KeyRBAC, rev)
	}
	if err != nil {
		return 0, fmt.Errorf("writing %s: %w", authz.KeyRBAC, err)
	}

	return newRev, nil
}

// PutPolicy implements [app.Store].
func (s *Store) PutPolicy(ctx context.Context, set authz.PolicySet) (uint64, error) {
	b, err := json.Marshal(set)
	if err != nil {
		return 0, fmt.Errorf("encoding policy set: %w", err)
	}

	rev, err := s.kv.Put(ctx, authz.KeyPolicy, b)
	if err != nil {
		return 0, fmt.Errorf("writing %s: %w", authz.KeyPolicy, err)
	}

	return rev, nil
}

// Seed stores set and r unless the bucket already holds a policy set or
// role data. It uses create-only writes, so replicas starting together and
// operators' edits made earlier are never overwritten. It reports which
// keys it created.
func (s *Store) Seed(ctx context.Context, set authz.PolicySet,
	r authz.RBAC) (policy, rbac bool, err error) {
	b, err := json.Marshal(set)
	if err != nil {
		return false, false, fmt.Errorf("encoding default policy set: %w", err)
	}
	policy, err = s.create(ctx, authz.KeyPolicy, b)
	if err != nil {
		return false, false, err
	}

	b, err = json.Marshal(r)
	if err != nil {
		return policy, false, fmt.Errorf("encoding default roles: %w", err)
	}
	rbac, err = s.create(ctx, authz.KeyRBAC, b)

	return policy, rbac, err
}

func (s *Store) create(ctx context.Context, key string, value []byte) (bool, error) {
	_, err := s.kv.Create(ctx, key, value)
	if errors.Is(err, jetstream.ErrKeyExists) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("creating %s: %w", key, err)
	}

	return true, nil
}
