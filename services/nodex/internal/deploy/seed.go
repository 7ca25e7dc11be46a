// Package deploy writes and reads the files of a multi-node deployment:
// `nodex init` creates them, and the clustered broker (nodex-broker) loads
// its part. The registry seed lets a broker publish the bootstrap
// identities without the operator root key, which stays with the operator.
package deploy

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/nodexsec/nodex/libs/identity"
)

// SeedEntry is one registry value: a record signed by the root or the
// authority key, stored as the registry bucket holds it.
type SeedEntry struct {
	Key   string `json:"key"`
	Value []byte `json:"value"`
}

// ExportRegistry writes every value of the registry bucket except the
// heartbeat, which each broker writes itself, to path as JSON (mode 0600).
func ExportRegistry(ctx context.Context, kv jetstream.KeyValue, path string) (int, error) {
	keys, err := kv.ListKeys(ctx)
	if err != nil {
		return 0, fmt.Errorf("listing registry keys: %w", err)
	}
	var entries []SeedEntry
	for key := range keys.Keys() {
		if key == identity.KeyHeartbeat {
			continue
		}
		e, err := kv.Get(ctx, key)
		if err != nil {
			return 0, fmt.Errorf("reading registry key %s: %w", key, err)
		}
		entries = append(entries, SeedEntry{Key: key, Value: e.Value()})
	}
	data, err := json.MarshalIndent(entries, "", "  ")
	if err != nil {
		return 0, fmt.Errorf("encoding registry seed: %w", err)
	}
	if err := os.WriteFile(path, data, 0o600); err != nil {
		return 0, fmt.Errorf("writing registry seed %s: %w", path, err)
	}

	return len(entries), nil
}

// ImportRegistry writes each value of the seed file at path whose key is
// missing from kv, and returns how many it wrote. Existing keys keep their
// values, so a restarted broker never rolls the registry back. Readers
// verify every value against the root key, so the broker needs no key.
//
// TODO: a newer root-signed authority delegation in the seed is ignored
// like any existing key. Once the delegation has expired, the broker
// authorizes no client, so a deployment without the root key online then
// has no way to write a renewal into the registry.
func ImportRegistry(ctx context.Context, kv jetstream.KeyValue, path string) (int, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return 0, fmt.Errorf("reading registry seed: %w", err)
	}
	var entries []SeedEntry
	if err := json.Unmarshal(data, &entries); err != nil {
		return 0, fmt.Errorf("decoding registry seed %s: %w", path, err)
	}
	written := 0
	for _, e := range entries {
		_, err := kv.Create(ctx, e.Key, e.Value)
		if errors.Is(err, jetstream.ErrKeyExists) {
			continue
		}
		if err != nil {
			return written, fmt.Errorf("writing registry key %s: %w", e.Key, err)
		}
		written++
	}

	return written, nil
}
