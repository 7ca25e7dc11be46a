// Package bundles binds the runner to codesec's bundle store and revocation
// list without creating or updating them: the runner may only read both.
package bundles

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/nodexsec/nodex/libs/bundle"
)

// BindStore binds the existing bundle object store, read-only. Its Get
// reads an id that a lagging replica does not have yet again for up to
// [bundle.MissWait].
func BindStore(ctx context.Context, js jetstream.JetStream) (*bundle.Store, error) {
	return bundle.BindStore(ctx, js)
}

// Revocations mirrors the NODEX_REVOKED bucket in memory. Revoked fails
// closed: it returns an error until the first sync, after Stop, and while
// the NATS connection is down.
type Revocations struct {
	js      jetstream.JetStream
	watcher jetstream.KeyWatcher
	synced  chan struct{}
	done    chan struct{}

	mu      sync.RWMutex
	revoked map[string]bool
}

var _ bundle.RevocationChecker = (*Revocations)(nil)

// WatchRevocations binds the bucket and returns once every stored revocation
// is loaded.
func WatchRevocations(ctx context.Context, js jetstream.JetStream) (*Revocations, error) {
	kv, err := js.KeyValue(ctx, bundle.RevokedBucket)
	if err != nil {
		return nil, fmt.Errorf("binding KV bucket %s: %w", bundle.RevokedBucket, err)
	}
	kw, err := kv.WatchAll(context.WithoutCancel(ctx), jetstream.IgnoreDeletes())
	if err != nil {
		return nil, fmt.Errorf("watching KV bucket %s: %w", bundle.RevokedBucket, err)
	}
	r := &Revocations{js: js, watcher: kw, synced: make(chan struct{}), done: make(chan struct{}),
		revoked: map[string]bool{}}
	go r.run()
	select {
	case <-r.synced:
		return r, nil
	case <-ctx.Done():
		r.Stop()
		return nil, fmt.Errorf("syncing revocation list: %w", ctx.Err())
	}
}

func (r *Revocations) run() {
	defer close(r.done)
	synced := false
	for e := range r.watcher.Updates() {
		if e == nil {
			if !synced {
				synced = true
				close(r.synced)
			}
			continue
		}
		if e.Operation() == jetstream.KeyValuePut {
			r.mu.Lock()
			r.revoked[e.Key()] = true
			r.mu.Unlock()
		}
	}
}

// Revoked reports whether bundleID is revoked.
func (r *Revocations) Revoked(_ context.Context, bundleID string) (bool, error) {
	select {
	case <-r.done:
		return false, errors.New("revocation watcher stopped")
	default:
	}
	select {
	case <-r.synced:
	default:
		return false, errors.New("revocation watcher not synced")
	}
	if !r.js.Conn().IsConnected() {
		return false, errors.New("NATS connection down, revocations may be missed")
	}
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.revoked[bundleID], nil
}

// Stop ends the watch; Revoked returns an error afterwards.
func (r *Revocations) Stop() {
	_ = r.watcher.Stop()
	<-r.done
}
