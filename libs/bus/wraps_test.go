package bus

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/nodexsec/nodex/libs/envelope"
	"github.com/nodexsec/nodex/libs/testkit"
)

func testWrapKey(b byte) envelope.WrapKey {
	return envelope.WrapKey{Sender: "agent-demo", KID: [32]byte{b},
		Recipient: envelope.Recipient{Type: envelope.RecipientRole, Name: "service:sandbox", Version: 1}}
}

// TestWrapGetWaitsForLateWrap reads a wrap that appears only after the
// read began, as on a replica that lags the sender's acknowledgement.
func TestWrapGetWaitsForLateWrap(t *testing.T) {
	srv := testkit.NATSServer(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ws, err := OpenWrapStore(ctx, testkit.JetStream(t, srv), WrapStoreOptions{})
	if err != nil {
		t.Fatal(err)
	}
	key := testWrapKey(1)
	go func() {
		time.Sleep(300 * time.Millisecond)
		if err := ws.Create(ctx, key, []byte("wrap")); err != nil {
			t.Errorf("creating wrap: %v", err)
		}
	}()
	got, err := ws.Get(ctx, key)
	if err != nil {
		t.Fatalf("getting a wrap created 300 ms later: %v", err)
	}
	if string(got) != "wrap" {
		t.Errorf("got wrap %q, want %q", got, "wrap")
	}
}

// TestWrapGetMissing checks that a wrap that never appears is reported as
// envelope.ErrNotFound once the miss wait has passed, and not much later.
func TestWrapGetMissing(t *testing.T) {
	srv := testkit.NATSServer(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	const wait = 400 * time.Millisecond
	ws, err := OpenWrapStore(ctx, testkit.JetStream(t, srv), WrapStoreOptions{MissWait: wait})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	_, err = ws.Get(ctx, testWrapKey(2))
	took := time.Since(start)
	if !errors.Is(err, envelope.ErrNotFound) {
		t.Fatalf("got error %v, want envelope.ErrNotFound", err)
	}
	if took < wait/2 || took > wait+2*time.Second {
		t.Errorf("missing wrap reported after %s, want about %s", took, wait)
	}
}

// TestWrapMissesWaitBounded starts more concurrent Gets of missing wraps
// than may wait at once: the extra ones must report the miss at once
// instead of each holding its caller for the whole miss wait.
func TestWrapMissesWaitBounded(t *testing.T) {
	srv := testkit.NATSServer(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	const wait = 2 * time.Second
	ws, err := OpenWrapStore(ctx, testkit.JetStream(t, srv), WrapStoreOptions{MissWait: wait})
	if err != nil {
		t.Fatal(err)
	}
	const gets = 3 * maxRetryingMisses
	took := make(chan time.Duration, gets)
	for i := range gets {
		go func() {
			start := time.Now()
			_, err := ws.Get(ctx, testWrapKey(byte(100+i)))
			if !errors.Is(err, envelope.ErrNotFound) {
				t.Errorf("get %d: error %v, want envelope.ErrNotFound", i, err)
			}
			took <- time.Since(start)
		}()
	}
	fast := 0
	for range gets {
		if <-took < wait/2 {
			fast++
		}
	}
	if want := gets - maxRetryingMisses; fast < want {
		t.Errorf("%d of %d missing-wrap reads returned before half the miss wait, want at least %d",
			fast, gets, want)
	}
}

// TestOpenWrapStoreReplicas creates the wrap bucket at three replicas and
// reopens it with the default setting, which must not lower it.
func TestOpenWrapStoreReplicas(t *testing.T) {
	servers := testkit.NATSCluster(t, 3)
	js := testkit.JetStream(t, servers[2])
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := OpenWrapStore(ctx, js, WrapStoreOptions{Replicas: 3}); err != nil {
		t.Fatalf("creating the wrap bucket: %v", err)
	}
	if _, err := NewWrapStore(ctx, js, 0); err != nil {
		t.Fatalf("reopening the wrap bucket: %v", err)
	}
	s, err := js.Stream(ctx, "KV_"+envelope.WrapBucket)
	if err != nil {
		t.Fatal(err)
	}
	if got := s.CachedInfo().Config.Replicas; got != 3 {
		t.Errorf("wrap bucket has %d replicas, want 3", got)
	}
}

func TestWrapStoreCreateAndGet(t *testing.T) {
	ctx := context.Background()
	js := testkit.JetStream(t, testkit.NATSServer(t))
	ws, err := NewWrapStore(ctx, js, 0)
	if err != nil {
		t.Fatal(err)
	}
	k := envelope.WrapKey{Sender: "codesec", Recipient: envelope.Recipient{
		Type: envelope.RecipientRole, Name: "service:monitor", Version: 2}}
	if _, err := ws.Get(ctx, k); !errors.Is(err, envelope.ErrNotFound) {
		t.Errorf("missing wrap: got %v, want ErrNotFound", err)
	}
	if err := ws.Create(ctx, k, []byte("w1")); err != nil {
		t.Fatalf("creating wrap: %v", err)
	}
	if err := ws.Create(ctx, k, []byte("w2")); !errors.Is(err, envelope.ErrWrapExists) {
		t.Errorf("second create: got %v, want ErrWrapExists", err)
	}
	for name, s := range map[string]*WrapStore{"bound": ws, "agent": BindWrapStore(js)} {
		if got, err := s.Get(ctx, k); err != nil || string(got) != "w1" {
			t.Errorf("%s store: got %q, %v; want w1", name, got, err)
		}
	}
}

func TestWrapStoreReadsLegacyKey(t *testing.T) {
	ctx := context.Background()
	js := testkit.JetStream(t, testkit.NATSServer(t))
	ws, err := NewWrapStore(ctx, js, 0)
	if err != nil {
		t.Fatal(err)
	}
	k := envelope.WrapKey{Sender: "codesec", Recipient: envelope.Recipient{
		Type: envelope.RecipientIdentity, Name: "monitor", Version: 1}}
	kv, err := js.KeyValue(ctx, envelope.WrapBucket)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Create(ctx, k.LegacyString(), []byte("old")); err != nil {
		t.Fatal(err)
	}
	if got, err := ws.Get(ctx, k); err != nil || string(got) != "old" {
		t.Errorf("service store: got %q, %v; want the wrap stored under the older key", got, err)
	}
	// Agents may read only the current layout, which their grant names.
	if _, err := BindWrapStore(js).Get(ctx, k); !errors.Is(err, envelope.ErrNotFound) {
		t.Errorf("agent store: got %v, want ErrNotFound", err)
	}
}
