package bundle

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/nodexsec/nodex/libs/testkit"
)

func TestStorePutGet(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	js := testkit.JetStream(t, testkit.NATSServer(t))
	store, err := OpenStore(ctx, js, 0)
	if err != nil {
		t.Fatal(err)
	}
	f := newFixture(t)
	b := f.seal(t, testManifest("b-store"))

	if err := store.Put(ctx, "b-store", b); err != nil {
		t.Fatalf("Put: %v", err)
	}
	got, err := store.Get(ctx, "b-store")
	if err != nil {
		t.Fatalf("Get: %v", err)
	}
	if !bytes.Equal(got.Marshal(), b.Marshal()) {
		t.Error("stored bundle differs from the one put")
	}

	if _, err := store.Get(ctx, "b-absent"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Get of absent id: error = %v, want %v", err, ErrNotFound)
	}
	if err := store.Put(ctx, "../x", b); !errors.Is(err, ErrInvalidInput) {
		t.Errorf("Put with id ../x: error = %v, want %v", err, ErrInvalidInput)
	}
}

// TestStoreGetWaitsForLaggingPut simulates a replica that has not yet
// applied a put. The bundle appears only after Get has started, and Get
// must still return it instead of not found.
func TestStoreGetWaitsForLaggingPut(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	js := testkit.JetStream(t, testkit.NATSServer(t))
	store, err := OpenStore(ctx, js, 0)
	if err != nil {
		t.Fatal(err)
	}
	b := newFixture(t).seal(t, testManifest("b-late"))

	put := make(chan error, 1)
	go func() {
		time.Sleep(150 * time.Millisecond)
		put <- store.Put(ctx, "b-late", b)
	}()
	started := time.Now()
	got, err := store.Get(ctx, "b-late")
	if err != nil {
		t.Fatalf("Get of a bundle put 150ms later: %v", err)
	}
	if err := <-put; err != nil {
		t.Fatalf("Put: %v", err)
	}
	if !bytes.Equal(got.Marshal(), b.Marshal()) {
		t.Error("bundle read after the retry differs from the one put")
	}
	if waited := time.Since(started); waited > MissWait {
		t.Errorf("Get waited %s, more than MissWait %s", waited, MissWait)
	}

	// An id that never appears is reported missing once MissWait is spent.
	started = time.Now()
	if _, err := store.Get(ctx, "b-never"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Get of an id never put: error = %v, want %v", err, ErrNotFound)
	}
	if waited := time.Since(started); waited < MissWait/2 {
		t.Errorf("Get gave up on a missing id after %s, want about MissWait %s", waited, MissWait)
	}
}

func TestRevocationReachesWatcher(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	srv := testkit.NATSServer(t)
	list, err := OpenRevocations(ctx, testkit.JetStream(t, srv), 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := list.Revoke(ctx, Revocation{BundleID: "b-old", Reason: "test", By: "op"}); err != nil {
		t.Fatal(err)
	}

	// The watcher runs on its own connection, as a sandbox-runner would.
	runnerList, err := OpenRevocations(ctx, testkit.JetStream(t, srv), 0)
	if err != nil {
		t.Fatal(err)
	}
	w, err := runnerList.Watch(ctx)
	if err != nil {
		t.Fatalf("Watch: %v", err)
	}
	defer w.Stop()

	if revoked, err := w.Revoked(ctx, "b-old"); err != nil || !revoked {
		t.Errorf("Revoked(b-old) before watch = %v, %v, want true, nil", revoked, err)
	}
	if revoked, err := w.Revoked(ctx, "b-new"); err != nil || revoked {
		t.Errorf("Revoked(b-new) before revoke = %v, %v, want false, nil", revoked, err)
	}

	if err := list.Revoke(ctx, Revocation{BundleID: "b-new", Reason: "test", By: "op"}); err != nil {
		t.Fatal(err)
	}
	waitRevoked(t, w, "b-new", 5*time.Second)

	// Deleting the KV entry must not un-revoke the bundle.
	if err := list.kv.Delete(ctx, "b-new"); err != nil {
		t.Fatal(err)
	}
	if err := list.Revoke(ctx, Revocation{BundleID: "b-marker", Reason: "test"}); err != nil {
		t.Fatal(err)
	}
	waitRevoked(t, w, "b-marker", 5*time.Second)
	if revoked, _ := w.Revoked(ctx, "b-new"); !revoked {
		t.Error("Revoked(b-new) after KV delete = false, want true")
	}
}

func waitRevoked(t testing.TB, w *RevocationWatcher, id string, deadline time.Duration) {
	t.Helper()

	end := time.Now().Add(deadline)
	for time.Now().Before(end) {
		if revoked, err := w.Revoked(context.Background(), id); err == nil && revoked {
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatalf("bundle %q not revoked in the watcher after %s", id, deadline)
}

func TestRevocationWatcherFailsClosed(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	srv := testkit.NATSServer(t)
	js := testkit.JetStream(t, srv)
	list, err := OpenRevocations(ctx, js, 0)
	if err != nil {
		t.Fatal(err)
	}
	w, err := list.Watch(ctx)
	if err != nil {
		t.Fatal(err)
	}
	w.Stop()
	if _, err := w.Revoked(ctx, "b-any"); err == nil {
		t.Error("Revoked after Stop: error = nil, want an error")
	}

	f := newFixture(t)
	opts := f.options()
	opts.Revocations = w
	if _, err := Verify(ctx, f.seal(t, testManifest("b-any")), opts); !errors.Is(err, ErrRevocationUnknown) {
		t.Errorf("Verify with a stopped watcher: error = %v, want %v", err, ErrRevocationUnknown)
	}
}

// BenchmarkRevocationLatency measures one revocation end to end: the KV
// write with its ack, then the wait until a watcher on a second connection
// reports the id as revoked.
func BenchmarkRevocationLatency(b *testing.B) {
	ctx := context.Background()
	srv := testkit.NATSServer(b)
	list, err := OpenRevocations(ctx, testkit.JetStream(b, srv), 0)
	if err != nil {
		b.Fatal(err)
	}
	runnerList, err := OpenRevocations(ctx, testkit.JetStream(b, srv), 0)
	if err != nil {
		b.Fatal(err)
	}
	w, err := runnerList.Watch(ctx)
	if err != nil {
		b.Fatal(err)
	}
	defer w.Stop()

	ids := make([]string, b.N)
	for i := range ids {
		ids[i] = fmt.Sprintf("b-lat-%d", i)
	}
	b.ResetTimer()
	for _, id := range ids {
		if err := list.Revoke(ctx, Revocation{BundleID: id}); err != nil {
			b.Fatal(err)
		}
		for {
			if revoked, _ := w.Revoked(ctx, id); revoked {
				break
			}
			time.Sleep(20 * time.Microsecond)
		}
	}
}
