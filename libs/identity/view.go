package identity

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"errors"
	"fmt"
	"maps"
	"os"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/nodexsec/nodex/libs/bus"
)

// Bucket is the JetStream KV bucket holding the registry.
const Bucket = "NODEX_REGISTRY"

// Default timings of the registry heartbeat.
const (
	DefaultHeartbeatInterval = 2 * time.Second
	DefaultStaleAfter        = 10 * time.Second
)

// StaleAfterEnv names the environment variable that sets the StaleAfter of
// every [View] whose options leave it zero, so one setting reaches the
// brokers, the services and the clients of a deployment. A cluster needs a
// longer bound than DefaultStaleAfter: after a node is lost, nats-server
// elects the registry stream's new leader 4 to 9 s later (its raft election
// timeouts), and until then no heartbeat can be written.
const StaleAfterEnv = "NODEX_REGISTRY_STALE_AFTER"

// Bounds of the value of [StaleAfterEnv]. Below two heartbeat intervals a
// view goes stale between heartbeats. Above the max, a hostile NATS server
// could hide a suspension for longer than an operator would expect.
const (
	MinStaleAfter = 2 * DefaultHeartbeatInterval
	MaxStaleAfter = 2 * time.Minute
)

// StaleAfterFromEnv returns the StaleAfter set by [StaleAfterEnv] through
// getenv, or DefaultStaleAfter when it is unset. A value that is not a
// duration within [MinStaleAfter, MaxStaleAfter] is an error, so a typo
// does not silently change how long a view may be trusted.
func StaleAfterFromEnv(getenv func(string) string) (time.Duration, error) {
	raw := getenv(StaleAfterEnv)
	if raw == "" {
		return DefaultStaleAfter, nil
	}
	d, err := time.ParseDuration(raw)
	if err != nil || d < MinStaleAfter || d > MaxStaleAfter {
		return 0, fmt.Errorf("invalid %s=%q: set a duration from %s to %s such as 20s, "+
			"or unset it for %s", StaleAfterEnv, raw, MinStaleAfter, MaxStaleAfter,
			DefaultStaleAfter)
	}

	return d, nil
}

// EnsureBucket creates the registry bucket with file storage if it is
// missing and returns it. It requests one replica, and an existing bucket
// keeps a higher count (see [bus.EnsureKV]).
func EnsureBucket(ctx context.Context, js jetstream.JetStream) (jetstream.KeyValue, error) {
	kv, err := bus.EnsureKV(ctx, js, jetstream.KeyValueConfig{
		Bucket:      Bucket,
		Description: "NodeX identity registry, every value signed by the operator root key",
		History:     8,
		Storage:     jetstream.FileStorage,
	})
	if err != nil {
		return nil, err
	}

	return kv, nil
}

// ViewOptions tune a [View]. The zero value uses the defaults.
type ViewOptions struct {
	// StaleAfter is the maximum age of the newest fresh heartbeat. Past it,
	// every lookup fails with ErrStale. Zero means the value of
	// [StaleAfterEnv], or DefaultStaleAfter when that is unset.
	StaleAfter time.Duration
	// Now returns the current time; nil means time.Now.
	Now func() time.Time
	// StateFile, if set, keeps the highest accepted version of every
	// record (heartbeats excepted) across restarts, so a server cannot
	// roll a restarted reader back to an older, validly signed record.
	// The file is written with mode 0600 after every accepted change.
	StateFile string
}

// Change is one identity update seen by a [View]. Old is nil for a new
// identity.
type Change struct {
	Old, New *Identity
}

// View is a verified, continuously watched copy of the registry. Every
// lookup fails closed with ErrStale when no fresh heartbeat arrived within
// StaleAfter. It is safe for concurrent use.
type View struct {
	opts    ViewOptions
	watcher jetstream.KeyWatcher

	mu         sync.RWMutex
	verifier   Verifier
	versions   map[string]uint64
	identities map[string]*Identity
	byNATSKey  map[string]string
	roles      map[string]*RoleEpoch
	roleEpochs map[string]map[int]*RoleEpoch
	heartbeat  time.Time
	floors     map[string]uint64
	rejected   uint64
	mismatched uint64
	lastErr    error
	listeners  []func(Change)
	done       chan struct{}
}

// Watch starts watching kv, verifying every entry against root, and returns
// once the current values are loaded.
func Watch(ctx context.Context, kv jetstream.KeyValue, root ed25519.PublicKey,
	opts ViewOptions,
) (*View, error) {
	if len(root) != ed25519.PublicKeySize {
		return nil, fmt.Errorf("watching registry: root key has %d bytes, want %d",
			len(root), ed25519.PublicKeySize)
	}
	if opts.StaleAfter <= 0 {
		d, err := StaleAfterFromEnv(os.Getenv)
		if err != nil {
			return nil, fmt.Errorf("watching registry: %w", err)
		}
		opts.StaleAfter = d
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	// The watch ends with Close, not with the caller's start-up context.
	w, err := kv.WatchAll(context.WithoutCancel(ctx))
	if err != nil {
		return nil, fmt.Errorf("watching KV bucket %s: %w", Bucket, err)
	}
	floors, err := loadFloors(opts.StateFile)
	if err != nil {
		return nil, err
	}
	v := &View{
		floors: floors,
		opts:   opts, watcher: w, verifier: Verifier{Root: root},
		versions: map[string]uint64{}, identities: map[string]*Identity{},
		byNATSKey: map[string]string{}, roles: map[string]*RoleEpoch{},
		roleEpochs: map[string]map[int]*RoleEpoch{},
		done:       make(chan struct{}),
	}
	loaded := make(chan struct{})
	go v.run(loaded)

	select {
	case <-loaded:
		return v, nil
	case <-ctx.Done():
		v.Close()
		return nil, fmt.Errorf("loading registry: %w", ctx.Err())
	}
}

// Close stops the watch.
func (v *View) Close() {
	_ = v.watcher.Stop()
	<-v.done
}

func (v *View) run(loaded chan struct{}) {
	defer close(v.done)

	// The initial values arrive in stream order, so a renewed delegation
	// comes after the downgrades signed under it. Entries that need a
	// delegation not seen yet wait for the end of the initial values,
	// because rejecting them would drop every contained identity and make
	// each heartbeat digest mismatch. The heartbeat waits too, so that its
	// digest is compared with the complete initial state.
	var pending []jetstream.KeyValueEntry
	loading := true
	for e := range v.watcher.Updates() {
		if e == nil {
			loading = false
			for _, p := range pending {
				if err := v.apply(p.Key(), p.Value()); err != nil {
					v.reject(err)
				}
			}
			pending = nil
			close(loaded)
			continue
		}
		if e.Operation() != jetstream.KeyValuePut {
			// Records are never deleted: identities are revoked instead.
			// A delete marker keeps the last verified record in place.
			v.reject(fmt.Errorf("%w: %s of %q ignored", ErrBadRecord, e.Operation(), e.Key()))
			continue
		}
		if loading && e.Key() == KeyHeartbeat {
			pending = append(pending, e)
			continue
		}
		err := v.apply(e.Key(), e.Value())
		if loading && errors.Is(err, ErrNoAuthority) && !v.hasDelegation() {
			pending = append(pending, e)
			continue
		}
		if err != nil {
			v.reject(err)
		}
	}
}

func (v *View) hasDelegation() bool {
	v.mu.RLock()
	defer v.mu.RUnlock()

	return v.verifier.authority != nil
}

// Delegation returns the authority delegation this view trusts, whatever
// its expiry, or an error wrapping ErrNoAuthority if it has seen none. The
// heartbeat writer reads it to warn before the delegation expires.
func (v *View) Delegation() (*Authority, error) {
	v.mu.RLock()
	defer v.mu.RUnlock()

	if v.verifier.authority == nil {
		return nil, fmt.Errorf("%w: registry has no %q record", ErrNoAuthority, KeyAuthority)
	}
	d := *v.verifier.authority

	return &d, nil
}

// OnChange registers fn to be called, from the watch goroutine, after every
// accepted identity update. fn must not block.
func (v *View) OnChange(fn func(Change)) {
	v.mu.Lock()
	defer v.mu.Unlock()

	v.listeners = append(v.listeners, fn)
}

func (v *View) reject(err error) {
	v.mu.Lock()
	defer v.mu.Unlock()

	v.rejected++
	v.lastErr = err
}

// Rejected returns how many entries failed verification or ordering, and
// the last such error.
func (v *View) Rejected() (uint64, error) {
	v.mu.RLock()
	defer v.mu.RUnlock()

	return v.rejected, v.lastErr
}

func (v *View) apply(key string, value []byte) error {
	e, err := ParseEntry(value)
	if err != nil {
		return err
	}
	now := v.opts.Now()

	v.mu.Lock()
	var rec *Record
	if key == KeyAuthority {
		var probe Verifier
		probe.Root = v.verifier.Root
		rec, err = probe.SetAuthority(e)
	} else {
		rec, err = v.verifier.Open(key, e, now)
	}
	if err == nil && rec.Version <= v.versions[key] {
		err = fmt.Errorf("%w: %q version %d after %d", ErrRollback, key, rec.Version,
			v.versions[key])
	}
	if err == nil && rec.Version < v.floors[key] {
		err = fmt.Errorf("%w: %q version %d below %d accepted before restart", ErrRollback,
			key, rec.Version, v.floors[key])
	}
	if err != nil {
		v.mu.Unlock()
		return err
	}
	v.versions[key] = rec.Version
	change := v.storeLocked(rec, e)
	listeners := slices.Clone(v.listeners)
	v.mu.Unlock()

	if key != KeyHeartbeat && v.opts.StateFile != "" {
		if err := v.saveFloors(); err != nil {
			return err
		}
	}
	if change != nil {
		for _, fn := range listeners {
			fn(*change)
		}
	}

	return nil
}

// storeLocked records a verified record; v.mu must be held.
func (v *View) storeLocked(rec *Record, e Entry) *Change {
	switch {
	case rec.Key == KeyAuthority:
		_, _ = v.verifier.SetAuthority(e)
	case rec.Key == KeyHeartbeat:
		// A heartbeat whose digest differs from this view's state means
		// the view missed or was denied a record: it must not count as
		// fresh, or a server could hide a suspension from some parties.
		if rec.Digest == nil || bytes.Equal(rec.Digest, v.digestLocked()) {
			v.heartbeat = rec.IssuedAt
		} else {
			v.mismatched++
		}
	case rec.Role != nil:
		v.roles[rec.Role.Role] = rec.Role
		if v.roleEpochs[rec.Role.Role] == nil {
			v.roleEpochs[rec.Role.Role] = map[int]*RoleEpoch{}
		}
		v.roleEpochs[rec.Role.Role][rec.Role.Epoch] = rec.Role
	case rec.Identity != nil:
		old := v.identities[rec.Identity.ID]
		if old != nil && old.NATSKey != rec.Identity.NATSKey {
			delete(v.byNATSKey, old.NATSKey)
		}
		v.identities[rec.Identity.ID] = rec.Identity
		v.byNATSKey[rec.Identity.NATSKey] = rec.Identity.ID

		return &Change{Old: old, New: rec.Identity}
	}

	return nil
}

// Digest returns the SHA-256 digest of the registry state this view
// accepted: every key except the heartbeat with its version, sorted by key.
// The heartbeat writer signs it so that readers can detect withheld
// records.
func (v *View) Digest() []byte {
	v.mu.RLock()
	defer v.mu.RUnlock()

	return v.digestLocked()
}

func (v *View) digestLocked() []byte {
	keys := slices.Sorted(maps.Keys(v.versions))
	h := sha256.New()
	for _, k := range keys {
		if k == KeyHeartbeat {
			continue
		}
		fmt.Fprintf(h, "%s\x00%d\n", k, v.versions[k])
	}

	return h.Sum(nil)
}

// Mismatched returns how many heartbeats carried a digest that differed
// from this view's state and so did not refresh it.
func (v *View) Mismatched() uint64 {
	v.mu.RLock()
	defer v.mu.RUnlock()

	return v.mismatched
}

// Fresh returns ErrStale unless a heartbeat newer than StaleAfter was seen
// whose digest, if it carries one, matched this view's state.
func (v *View) Fresh() error {
	v.mu.RLock()
	defer v.mu.RUnlock()

	return v.freshLocked()
}

func (v *View) freshLocked() error {
	age := v.opts.Now().Sub(v.heartbeat)
	if v.heartbeat.IsZero() || age > v.opts.StaleAfter {
		return fmt.Errorf("%w: last heartbeat %s ago, bound %s", ErrStale,
			age.Round(time.Millisecond), v.opts.StaleAfter)
	}

	return nil
}

// Identity returns the record of identity id, whatever its status.
func (v *View) Identity(id string) (*Identity, error) {
	v.mu.RLock()
	defer v.mu.RUnlock()

	if err := v.freshLocked(); err != nil {
		return nil, err
	}
	ident, ok := v.identities[id]
	if !ok {
		return nil, fmt.Errorf("%w: %q", ErrNotFound, id)
	}

	return ident, nil
}

// Active returns the record of identity id if it is active, and
// ErrNotActive otherwise.
func (v *View) Active(id string) (*Identity, error) {
	ident, err := v.Identity(id)
	if err != nil {
		return nil, err
	}
	if !ident.Active() {
		return nil, fmt.Errorf("%w: %q is %s", ErrNotActive, id, ident.Status)
	}

	return ident, nil
}

// ByNATSKey returns the identity whose NATS user nkey is pub.
func (v *View) ByNATSKey(pub string) (*Identity, error) {
	v.mu.RLock()
	id, ok := v.byNATSKey[pub]
	v.mu.RUnlock()

	if !ok {
		return nil, fmt.Errorf("%w: no identity with nkey %q", ErrNotFound, pub)
	}

	return v.Identity(id)
}

// Role returns the current epoch of role.
func (v *View) Role(role string) (*RoleEpoch, error) {
	v.mu.RLock()
	defer v.mu.RUnlock()

	if err := v.freshLocked(); err != nil {
		return nil, err
	}
	e, ok := v.roles[role]
	if !ok {
		return nil, fmt.Errorf("%w: role %q has no epoch", ErrNotFound, role)
	}

	return e, nil
}

// RoleEpochAt returns epoch n of role if this view has seen it since it
// started. The registry keeps only recent history, so older epochs are
// reached through [RoleEpoch.OpenPrevious] instead.
func (v *View) RoleEpochAt(role string, n int) (*RoleEpoch, error) {
	v.mu.RLock()
	defer v.mu.RUnlock()

	if err := v.freshLocked(); err != nil {
		return nil, err
	}
	e, ok := v.roleEpochs[role][n]
	if !ok {
		return nil, fmt.Errorf("%w: role %q epoch %d not seen", ErrNotFound, role, n)
	}

	return e, nil
}

// List returns every identity sorted by id, whatever the view's freshness.
func (v *View) List() []*Identity {
	v.mu.RLock()
	defer v.mu.RUnlock()

	out := slices.Collect(maps.Values(v.identities))
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })

	return out
}

// Members returns the active identities holding role, sorted by id.
func (v *View) Members(role string) []*Identity {
	var out []*Identity
	for _, ident := range v.List() {
		if ident.Active() && ident.HasRole(role) {
			out = append(out, ident)
		}
	}

	return out
}
