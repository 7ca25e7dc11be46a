package bundle

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/nodexsec/nodex/libs/bus"
)

// RevokedBucket is the JetStream KV bucket of revoked bundle ids. The key is
// the bundle id and the value a JSON [Revocation].
const RevokedBucket = "NODEX_REVOKED"

// Revocation is the record of a revoked bundle: the reason, the revoking
// identity and the time.
type Revocation struct {
	BundleID string    `json:"bundle_id"`
	Reason   string    `json:"reason"`
	By       string    `json:"by"`
	Time     time.Time `json:"time"`
}

// Revocations is the revocation list in the [RevokedBucket] KV bucket. It is
// safe for concurrent use.
//
// NOTE: entries are not signed. Any party that can write the bucket, the
// NATS operator included, can add a revocation, which only blocks a bundle.
// It can also delete one: a running [RevocationWatcher] keeps the id, but a
// watcher started after the delete never receives it.
type Revocations struct {
	kv jetstream.KeyValue
	js jetstream.JetStream
}

// OpenRevocations creates the [RevokedBucket] bucket with replicas (zero
// means 1) if it does not exist, and returns the list on it. An existing
// bucket with more replicas keeps them.
func OpenRevocations(ctx context.Context, js jetstream.JetStream, replicas int) (*Revocations, error) {
	kv, err := bus.EnsureKV(ctx, js, jetstream.KeyValueConfig{
		Bucket:      RevokedBucket,
		Description: "revoked bundle ids",
		Storage:     jetstream.FileStorage,
		Replicas:    replicas,
	})
	if err != nil {
		return nil, err
	}

	return &Revocations{kv: kv, js: js}, nil
}

// Revoke puts rev.BundleID on the list. Revoking twice keeps the first
// record, so the original reason and time survive.
func (r *Revocations) Revoke(ctx context.Context, rev Revocation) error {
	if err := CheckID(rev.BundleID); err != nil {
		return err
	}
	value, err := json.Marshal(rev)
	if err != nil {
		return fmt.Errorf("encoding revocation of bundle %q: %w", rev.BundleID, err)
	}

	_, err = r.kv.Create(ctx, rev.BundleID, value)
	if err != nil && !errors.Is(err, jetstream.ErrKeyExists) {
		return fmt.Errorf("revoking bundle %q: %w", rev.BundleID, err)
	}

	return nil
}

// Revoked reads the bucket directly: one round trip per call. The
// sandbox-runner uses a [RevocationWatcher] instead.
func (r *Revocations) Revoked(ctx context.Context, bundleID string) (bool, error) {
	_, err := r.kv.Get(ctx, bundleID)
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, jetstream.ErrKeyNotFound):
		return false, nil
	default:
		return false, fmt.Errorf("reading revocation of bundle %q: %w", bundleID, err)
	}
}

var (
	_ RevocationChecker = (*Revocations)(nil)
	_ RevocationChecker = (*RevocationWatcher)(nil)
)

// RevocationWatcher mirrors the revocation list in memory from a KV watch,
// so a revocation reaches it as soon as JetStream delivers it (measured in
// BenchmarkRevocationLatency). It keeps a revoked id even when the KV entry
// is deleted.
//
// Revoked fails closed: it returns an error while the watcher is not synced,
// after Stop, or while the NATS connection is down.
type RevocationWatcher struct {
	watcher jetstream.KeyWatcher
	js      jetstream.JetStream
	synced  chan struct{}
	done    chan struct{}

	mu      sync.RWMutex
	revoked map[string]bool
}

// Watch starts a [RevocationWatcher] and waits until it holds every
// revocation stored so far, or ctx ends.
func (r *Revocations) Watch(ctx context.Context) (*RevocationWatcher, error) {
	kw, err := r.kv.WatchAll(context.WithoutCancel(ctx), jetstream.IgnoreDeletes())
	if err != nil {
		return nil, fmt.Errorf("watching KV bucket %s: %w", RevokedBucket, err)
	}
	w := &RevocationWatcher{
		watcher: kw,
		js:      r.js,
		synced:  make(chan struct{}),
		done:    make(chan struct{}),
		revoked: make(map[string]bool),
	}
	go w.run()

	select {
	case <-w.synced:
		return w, nil
	case <-ctx.Done():
		w.Stop()
		return nil, fmt.Errorf("syncing revocation list: %w", ctx.Err())
	}
}

func (w *RevocationWatcher) run() {
	defer close(w.done)
	synced := false
	for entry := range w.watcher.Updates() {
		if entry == nil {
			if !synced {
				synced = true
				close(w.synced)
			}
			continue
		}
		if entry.Operation() != jetstream.KeyValuePut {
			continue
		}
		w.mu.Lock()
		w.revoked[entry.Key()] = true
		w.mu.Unlock()
	}
}

// Revoked reports whether bundleID is revoked, from memory.
func (w *RevocationWatcher) Revoked(_ context.Context, bundleID string) (bool, error) {
	// Two selects, because one select with both channels closed would pick
	// a ready case at random.
	select {
	case <-w.done:
		return false, errors.New("revocation watcher stopped")
	default:
	}
	select {
	case <-w.synced:
	default:
		return false, errors.New("revocation watcher not synced")
	}
	if !w.js.Conn().IsConnected() {
		return false, errors.New("NATS connection down, revocations may be missed")
	}

	w.mu.RLock()
	defer w.mu.RUnlock()

	return w.revoked[bundleID], nil
}

// Stop ends the watch. Revoked returns an error afterwards.
func (w *RevocationWatcher) Stop() {
	_ = w.watcher.Stop()
	<-w.done
}
