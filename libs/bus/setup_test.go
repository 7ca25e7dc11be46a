package bus

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/nodexsec/nodex/libs/testkit"
)

// TestEnsureKeepsReplicas restarts a service with the default replica
// setting against a cluster where its stream, bucket and object store
// already have three replicas: none may drop to one.
func TestEnsureKeepsReplicas(t *testing.T) {
	servers := testkit.NATSCluster(t, 3)
	js := testkit.JetStream(t, servers[0])
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	ensure := func(replicas int) error {
		if _, err := EnsureStream(ctx, js, jetstream.StreamConfig{
			Name: "JOBS", Subjects: []string{"jobs"}, Replicas: replicas,
		}); err != nil {
			return err
		}
		if _, err := EnsureKV(ctx, js, jetstream.KeyValueConfig{
			Bucket: "RECEIPTS", Replicas: replicas,
		}); err != nil {
			return err
		}
		_, err := EnsureObjectStore(ctx, js, jetstream.ObjectStoreConfig{
			Bucket: "BUNDLES", Replicas: replicas,
		})

		return err
	}
	if err := ensure(3); err != nil {
		t.Fatalf("first start at 3 replicas: %v", err)
	}
	if err := ensure(0); err != nil {
		t.Fatalf("restart with the default setting: %v", err)
	}
	if err := ensure(1); err != nil {
		t.Fatalf("restart at 1 replica: %v", err)
	}
	for _, name := range []string{"JOBS", "KV_RECEIPTS", "OBJ_BUNDLES"} {
		s, err := js.Stream(ctx, name)
		if err != nil {
			t.Fatalf("reading stream %s: %v", name, err)
		}
		if got := s.CachedInfo().Config.Replicas; got != 3 {
			t.Errorf("stream %s has %d replicas after restarts, want 3", name, got)
		}
	}
}

// TestEnsureRaisesReplicas checks that a higher setting still raises an
// existing stream.
func TestEnsureRaisesReplicas(t *testing.T) {
	servers := testkit.NATSCluster(t, 3)
	js := testkit.JetStream(t, servers[1])
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for _, replicas := range []int{0, 3} {
		if _, err := EnsureKV(ctx, js, jetstream.KeyValueConfig{
			Bucket: "REVOKED", Replicas: replicas,
		}); err != nil {
			t.Fatalf("ensuring at %d replicas: %v", replicas, err)
		}
	}
	s, err := js.Stream(ctx, "KV_REVOKED")
	if err != nil {
		t.Fatal(err)
	}
	if got := s.CachedInfo().Config.Replicas; got != 3 {
		t.Errorf("KV_REVOKED has %d replicas, want 3", got)
	}
}
