package kvstore_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/nodexsec/nodex/libs/testkit"
	"github.com/nodexsec/nodex/services/keyvault/api"
	"github.com/nodexsec/nodex/services/keyvault/internal/adapters/kvstore"
	"github.com/nodexsec/nodex/services/keyvault/internal/domain"
)

func openStore(t *testing.T) *kvstore.Store {
	t.Helper()
	s, err := kvstore.Open(context.Background(), testkit.JetStream(t, testkit.NATSServer(t)),
		kvstore.Options{})
	if err != nil {
		t.Fatal(err)
	}

	return s
}

func TestNameTokenKeepsNamesApart(t *testing.T) {
	names := []string{"a.b", "a-b", "a_b", "ab", "a.", "a..b", "0"}
	seen := map[string]string{}
	for _, n := range names {
		tok := kvstore.NameToken(n)
		if strings.Contains(tok, ".") {
			t.Errorf("token %q of %q contains a subject separator", tok, n)
		}
		if other, dup := seen[tok]; dup {
			t.Errorf("names %q and %q share token %q", n, other, tok)
		}
		seen[tok] = n
	}
}

func TestKeyCreateUpdateConflict(t *testing.T) {
	ctx := context.Background()
	s := openStore(t)
	k := &domain.Key{Name: "a..b", Provider: "groq", Created: time.Now()}
	if err := s.CreateKey(ctx, k); err != nil {
		t.Fatalf("CreateKey: %v", err)
	}
	if err := s.CreateKey(ctx, k); !errors.Is(err, domain.ErrKeyExists) {
		t.Errorf("second CreateKey: error = %v, want ErrKeyExists", err)
	}
	got, rev, err := s.GetKey(ctx, "a..b")
	if err != nil || got.Name != "a..b" {
		t.Fatalf("GetKey = %v, %v", got, err)
	}
	if err := s.UpdateKey(ctx, got, rev); err != nil {
		t.Fatalf("UpdateKey at current revision: %v", err)
	}
	if err := s.UpdateKey(ctx, got, rev); !errors.Is(err, domain.ErrConflict) {
		t.Errorf("UpdateKey at stale revision: error = %v, want ErrConflict", err)
	}

	if err := s.DeleteKey(ctx, "a..b"); err != nil {
		t.Fatalf("DeleteKey: %v", err)
	}
	if _, _, err := s.GetKey(ctx, "a..b"); !errors.Is(err, domain.ErrKeyNotFound) {
		t.Errorf("GetKey after delete: error = %v, want ErrKeyNotFound", err)
	}
	keys, err := s.ListKeys(ctx)
	if err != nil || len(keys) != 0 {
		t.Errorf("ListKeys after delete = %d keys, %v; want none", len(keys), err)
	}
}

func TestUsageCreateThenCAS(t *testing.T) {
	ctx := context.Background()
	s := openStore(t)
	agent := "agent with spaces/and:colons"
	u, rev, err := s.GetUsage(ctx, agent)
	if err != nil || rev != 0 {
		t.Fatalf("GetUsage of a new agent = rev %d, %v; want 0, nil", rev, err)
	}
	u.Count("groq", time.Now())
	if err := s.PutUsage(ctx, agent, u, 0); err != nil {
		t.Fatalf("PutUsage create: %v", err)
	}
	if err := s.PutUsage(ctx, agent, u, 0); !errors.Is(err, domain.ErrConflict) {
		t.Errorf("second create: error = %v, want ErrConflict", err)
	}
}

func TestRecordRequestOnce(t *testing.T) {
	ctx := context.Background()
	s := openStore(t)
	first, err := s.RecordRequest(ctx, "00ff")
	if err != nil || !first {
		t.Fatalf("first RecordRequest = %v, %v; want true, nil", first, err)
	}
	again, err := s.RecordRequest(ctx, "00ff")
	if err != nil || again {
		t.Errorf("replayed RecordRequest = %v, %v; want false, nil", again, err)
	}
}

// TestOpenKeepsReplicas restarts the keyvault at one replica against a
// cluster where its buckets have three. Every bucket must keep three
// replicas and the history and TTL that Open sets.
func TestOpenKeepsReplicas(t *testing.T) {
	servers := testkit.NATSCluster(t, 3)
	js := testkit.JetStream(t, servers[2])
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for _, replicas := range []int{3, 1} {
		if _, err := kvstore.Open(ctx, js, kvstore.Options{Replicas: replicas}); err != nil {
			t.Fatalf("opening the store at %d replicas: %v", replicas, err)
		}
	}

	tests := []struct {
		name    string
		bucket  string
		history int64
		ttl     time.Duration
	}{
		{"keys", kvstore.Bucket, 1, 0},
		{"fingerprints", api.FingerprintBucket, 1, 0},
		{"requests", kvstore.RequestBucket, 1, kvstore.RequestTTL},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := js.Stream(ctx, "KV_"+tt.bucket)
			if err != nil {
				t.Fatalf("reading stream KV_%s: %v", tt.bucket, err)
			}
			cfg := s.CachedInfo().Config
			if cfg.Replicas != 3 {
				t.Errorf("KV_%s has %d replicas after a restart at 1, want 3",
					tt.bucket, cfg.Replicas)
			}
			if cfg.MaxMsgsPerSubject != tt.history || cfg.MaxAge != tt.ttl {
				t.Errorf("KV_%s has history %d, ttl %v, want %d, %v",
					tt.bucket, cfg.MaxMsgsPerSubject, cfg.MaxAge, tt.history, tt.ttl)
			}
		})
	}
}
