package authz

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// The JetStream key-value bucket that holds the active policy set and role
// data. The policy service writes it; every deciding service watches it.
const (
	// KVBucket is the bucket name.
	KVBucket = "NODEX_POLICY"
	// KeyPolicy holds the JSON of the active [PolicySet]: Rego modules and
	// any data besides roles.
	KeyPolicy = "policy"
	// KeyRBAC holds the JSON of the role data, [RBAC], which policies read
	// at data.nodex.rbac.
	KeyRBAC = "rbac"
)

// WatchOptions configure [WatchKV]. The zero value is usable.
type WatchOptions struct {
	// InitialTimeout bounds the wait for the bucket's current values. Zero
	// means 10 seconds.
	InitialTimeout time.Duration
	// OnLoad is called after each successful load with the new revision.
	OnLoad func(revision string)
	// OnError is called when a change cannot be loaded. The previously
	// loaded version keeps deciding. It must not block.
	OnError func(err error)
	// Verifier, if set, accepts only values signed by the policy service
	// (see [Sign]). Nil accepts unsigned values, and signed ones without
	// checking them. Any writer of the bucket then controls the policy, so
	// nil is for tests and single-process development only.
	Verifier *Verifier
}

// storedValue is one opened bucket value.
type storedValue struct {
	payload  []byte
	revision uint64
}

// Watcher applies the bucket's policy set and role data to an Engine.
type Watcher struct {
	kw   jetstream.KeyWatcher
	e    *Engine
	opts WatchOptions

	mu        sync.Mutex
	policy    *storedValue
	rbac      *storedValue
	lastErr   error
	stopped   chan struct{}
	ready     chan struct{}
	readyOnce sync.Once
}

// WatchKV loads the policy set and role data stored in kv into e, then keeps
// applying every change until ctx ends or [Watcher.Stop] is called. It
// returns once the bucket's current values have been applied, so a caller
// starts deciding with the stored policy. An empty bucket leaves e without a
// policy, denying everything, until the policy service stores one.
func WatchKV(ctx context.Context, kv jetstream.KeyValue, e *Engine,
	opts WatchOptions) (*Watcher, error) {
	if opts.InitialTimeout <= 0 {
		opts.InitialTimeout = 10 * time.Second
	}

	kw, err := kv.WatchAll(ctx)
	if err != nil {
		return nil, fmt.Errorf("watching policy bucket %q: %w", kv.Bucket(), err)
	}

	w := &Watcher{
		kw: kw, e: e, opts: opts,
		stopped: make(chan struct{}),
		ready:   make(chan struct{}),
	}
	go w.run(ctx)

	select {
	case <-w.ready:
		return w, nil
	case <-time.After(opts.InitialTimeout):
		w.Stop()
		return nil, fmt.Errorf("watching policy bucket %q: no initial values after %s",
			kv.Bucket(), opts.InitialTimeout)
	case <-ctx.Done():
		w.Stop()
		return nil, fmt.Errorf("watching policy bucket %q: %w", kv.Bucket(), ctx.Err())
	}
}

// Stop ends the watch. The Engine keeps the last loaded version.
func (w *Watcher) Stop() {
	_ = w.kw.Stop()
	<-w.stopped
}

// Err returns the error of the last load attempt, or nil if it succeeded.
func (w *Watcher) Err() error {
	w.mu.Lock()
	defer w.mu.Unlock()

	return w.lastErr
}

func (w *Watcher) run(ctx context.Context) {
	defer close(w.stopped)

	updates := w.kw.Updates()
	initial := true
	for {
		select {
		case <-ctx.Done():
			_ = w.kw.Stop()
			return
		case entry, ok := <-updates:
			if !ok {
				return
			}
			if entry == nil {
				// All current values have arrived.
				initial = false
				w.load(ctx)
				w.readyOnce.Do(func() { close(w.ready) })
				continue
			}
			w.record(ctx, entry)
			if !initial && len(updates) == 0 {
				// Load once per burst of changes, not once per change.
				w.load(ctx)
			}
		}
	}
}

// record opens entry and keeps it as the latest value of its key. A value
// that fails verification, or a delete, is reported and leaves the previous
// value in place: delete markers carry no signature, and removing the policy
// or the roles is done by storing a new version, never by deleting.
func (w *Watcher) record(ctx context.Context, entry jetstream.KeyValueEntry) {
	key := entry.Key()
	if key != KeyPolicy && key != KeyRBAC {
		return
	}
	if entry.Operation() != jetstream.KeyValuePut {
		w.fail(fmt.Errorf("%w: key %q was deleted at revision %d; keeping the previous value",
			ErrInvalidPolicySet, key, entry.Revision()))
		return
	}

	payload, err := w.open(ctx, key, entry.Value())
	if err != nil {
		w.fail(fmt.Errorf("%w: %s revision %d: %w", ErrInvalidPolicySet, key,
			entry.Revision(), err))
		return
	}
	v := &storedValue{payload: payload, revision: entry.Revision()}

	w.mu.Lock()
	defer w.mu.Unlock()
	if key == KeyPolicy {
		w.policy = v
	} else {
		w.rbac = v
	}
}

func (w *Watcher) open(ctx context.Context, key string, value []byte) ([]byte, error) {
	if w.opts.Verifier == nil {
		return Unwrap(value), nil
	}

	return w.opts.Verifier.Open(ctx, key, value)
}

func (w *Watcher) fail(err error) {
	w.mu.Lock()
	w.lastErr = err
	w.mu.Unlock()

	if w.opts.OnError != nil {
		w.opts.OnError(err)
	}
}

// load composes the latest values into a PolicySet and loads it.
func (w *Watcher) load(ctx context.Context) {
	w.mu.Lock()
	policy, rbac := w.policy, w.rbac
	w.mu.Unlock()

	if policy == nil {
		return
	}

	set, err := composeSet(policy, rbac)
	if err == nil {
		err = w.e.Load(ctx, set)
	}
	if err != nil {
		w.fail(err)
		return
	}

	w.mu.Lock()
	w.lastErr = nil
	w.mu.Unlock()
	if w.opts.OnLoad != nil {
		w.opts.OnLoad(set.Revision)
	}
}

// composeSet builds the PolicySet that engines load from the bucket's
// policy value and its role data value (rbac may be nil). The revision names
// both values' bucket revisions, for example "policy@7/rbac@12".
func composeSet(policy, rbac *storedValue) (PolicySet, error) {
	var set PolicySet
	if err := json.Unmarshal(policy.payload, &set); err != nil {
		return PolicySet{}, fmt.Errorf("%w: decoding key %q revision %d: %w",
			ErrInvalidPolicySet, KeyPolicy, policy.revision, err)
	}
	set.Revision = fmt.Sprintf("policy@%d", policy.revision)

	var roles any = map[string]any{}
	if rbac != nil {
		if err := json.Unmarshal(rbac.payload, &roles); err != nil {
			return PolicySet{}, fmt.Errorf("%w: decoding key %q revision %d: %w",
				ErrInvalidPolicySet, KeyRBAC, rbac.revision, err)
		}
		set.Revision += fmt.Sprintf("/rbac@%d", rbac.revision)
	}

	data, err := WithRBAC(set.Data, roles)
	if err != nil {
		return PolicySet{}, err
	}
	set.Data = data

	return set, nil
}

// WithRBAC returns a copy of data with rbac placed at nodex.rbac, replacing
// whatever data held there. data itself is not modified.
func WithRBAC(data map[string]any, rbac any) (map[string]any, error) {
	out := make(map[string]any, len(data)+1)
	for k, v := range data {
		out[k] = v
	}

	nodex := map[string]any{}
	if existing, ok := out["nodex"]; ok {
		m, ok := existing.(map[string]any)
		if !ok {
			return nil, fmt.Errorf("%w: data.nodex is %T, want an object",
				ErrInvalidPolicySet, existing)
		}
		for k, v := range m {
			nodex[k] = v
		}
	}
	nodex["rbac"] = rbac
	out["nodex"] = nodex

	return out, nil
}

// Open returns an Engine that decides with the contents of the policy bucket
// and a Watcher that keeps it current until ctx ends. It waits for the
// policy service to create the bucket, polling every 100 ms until ctx ends,
// so services can start in any order. Stop the Watcher when done.
func Open(ctx context.Context, js jetstream.JetStream, opts Options,
	wopts WatchOptions) (*Engine, *Watcher, error) {
	for {
		kv, err := js.KeyValue(ctx, KVBucket)
		if err == nil {
			e := New(opts)
			w, err := WatchKV(ctx, kv, e, wopts)
			if err != nil {
				return nil, nil, err
			}
			return e, w, nil
		}
		if !errors.Is(err, jetstream.ErrBucketNotFound) {
			return nil, nil, fmt.Errorf("opening policy bucket %s: %w", KVBucket, err)
		}

		select {
		case <-ctx.Done():
			return nil, nil, fmt.Errorf("waiting for policy bucket %s: %w", KVBucket, ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}
