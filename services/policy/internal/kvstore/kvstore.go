// Package kvstore keeps the policy set and role data in the NODEX_POLICY
// JetStream key-value bucket that every deciding service watches.
package kvstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/nodexsec/nodex/libs/authz"
	"github.com/nodexsec/nodex/libs/bus"
	"github.com/nodexsec/nodex/services/policy/internal/app"
)

// Store implements [app.Store] on the policy bucket.
type Store struct {
	kv       jetstream.KeyValue
	signer   authz.Signer
	verifier *authz.Verifier
	now      func() time.Time
}

// Options configure signing. With both fields nil the Store writes and
// reads plain JSON, which is only safe when no one else can write the bucket.
type Options struct {
	// Signer signs every value written.
	Signer authz.Signer
	// Verifier checks every value read, so that the service never re-signs
	// role data a hostile server substituted.
	Verifier *authz.Verifier
}

var _ app.Store = (*Store)(nil)

// Open creates or updates the policy bucket, keeping history revisions per
// key, and returns a Store on it.
func Open(ctx context.Context, js jetstream.JetStream, history int,
	opts Options) (*Store, error) {
	kv, err := bus.EnsureKV(ctx, js, jetstream.KeyValueConfig{
		Bucket:      authz.KVBucket,
		Description: "NodeX policy set and role data",
		History:     uint8(history),
		Storage:     jetstream.FileStorage,
	})
	if err != nil {
		return nil, fmt.Errorf("opening bucket %s: %w", authz.KVBucket, err)
	}

	return &Store{kv: kv, signer: opts.Signer, verifier: opts.Verifier, now: time.Now}, nil
}

// encode marshals v and signs it for key when the Store has a Signer.
func (s *Store) encode(key string, v any) ([]byte, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("encoding %s: %w", key, err)
	}
	if s.signer == nil {
		return b, nil
	}

	return authz.Sign(s.signer, key, b, s.now())
}

// decode verifies (when the Store has a Verifier) and unmarshals a value.
func (s *Store) decode(ctx context.Context, key string, stored []byte, v any) error {
	payload := authz.Unwrap(stored)
	if s.verifier != nil {
		var err error
		if payload, err = s.verifier.Open(ctx, key, stored); err != nil {
			return err
		}
	}

	return json.Unmarshal(payload, v)
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
	if err := s.decode(ctx, authz.KeyRBAC, e.Value(), &r); err != nil {
		return authz.RBAC{}, 0, fmt.Errorf("decoding %s revision %d: %w",
			authz.KeyRBAC, e.Revision(), err)
	}

	return r, e.Revision(), nil
}

// UpdateRBAC implements [app.Store].
func (s *Store) UpdateRBAC(ctx context.Context, r authz.RBAC, rev uint64) (uint64, error) {
	b, err := s.encode(authz.KeyRBAC, r)
	if err != nil {
		return 0, err
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
	b, err := s.encode(authz.KeyPolicy, set)
	if err != nil {
		return 0, err
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
	b, err := s.encode(authz.KeyPolicy, set)
	if err != nil {
		return false, false, err
	}
	policy, err = s.create(ctx, authz.KeyPolicy, b)
	if err != nil {
		return false, false, err
	}

	b, err = s.encode(authz.KeyRBAC, r)
	if err != nil {
		return policy, false, err
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
