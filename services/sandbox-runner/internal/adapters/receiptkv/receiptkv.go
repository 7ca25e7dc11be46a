// Package receiptkv stores signed execution receipts in the JetStream KV
// bucket NODEX_RECEIPTS, keyed by run id.
package receiptkv

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/nodexsec/nodex/libs/bus"

	"github.com/nodexsec/nodex/services/sandbox-runner/internal/receipt"
)

// Bucket is the KV bucket that holds receipts.
const Bucket = "NODEX_RECEIPTS"

// ErrNotFound reports an unknown run id.
var ErrNotFound = errors.New("receiptkv: receipt not found")

// Store reads and writes receipts.
type Store struct {
	kv jetstream.KeyValue
}

// Open creates the bucket with replicas (zero means 1) or binds it; an
// existing bucket with more replicas keeps them.
func Open(ctx context.Context, js jetstream.JetStream, replicas int) (*Store, error) {
	kv, err := bus.EnsureKV(ctx, js, jetstream.KeyValueConfig{
		Bucket: Bucket, Description: "signed sandbox execution receipts", History: 1,
		Replicas: replicas,
	})
	if err != nil {
		return nil, err
	}
	return &Store{kv: kv}, nil
}

// Put stores a receipt; a run id is written once.
func (s *Store) Put(ctx context.Context, runID string, r *receipt.Signed) error {
	b, err := json.Marshal(r)
	if err != nil {
		return fmt.Errorf("encoding receipt %s: %w", runID, err)
	}
	if _, err := s.kv.Create(ctx, runID, b); err != nil {
		return fmt.Errorf("storing receipt %s: %w", runID, err)
	}
	return nil
}

// Get returns the receipt of a run.
func (s *Store) Get(ctx context.Context, runID string) (*receipt.Signed, error) {
	e, err := s.kv.Get(ctx, runID)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil, fmt.Errorf("%w: %s", ErrNotFound, runID)
	}
	if err != nil {
		return nil, fmt.Errorf("reading receipt %s: %w", runID, err)
	}
	var r receipt.Signed
	if err := json.Unmarshal(e.Value(), &r); err != nil {
		return nil, fmt.Errorf("decoding receipt %s: %w", runID, err)
	}
	return &r, nil
}
