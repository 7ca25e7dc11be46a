package events

import (
	"context"
	"testing"
	"time"

	"github.com/nodexsec/nodex/libs/bus"
	"github.com/nodexsec/nodex/libs/testkit"
)

// The bus client is the publisher's production sink.
var _ AsyncSink = (*bus.Client)(nil)

// TestEnsureStreamKeepsReplicas restarts a party at one replica, then
// with the default setting, against a cluster where NODEX_EVENTS has three.
// The stream must keep three replicas and stay append-only.
func TestEnsureStreamKeepsReplicas(t *testing.T) {
	servers := testkit.NATSCluster(t, 3)
	js := testkit.JetStream(t, servers[0])
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	const maxAge = 7 * 24 * time.Hour
	for _, replicas := range []int{3, 1, 0} {
		if _, err := EnsureStream(ctx, js, StreamOptions{MaxAge: maxAge, Replicas: replicas}); err != nil {
			t.Fatalf("ensuring %s at %d replicas: %v", StreamName, replicas, err)
		}
	}

	s, err := js.Stream(ctx, StreamName)
	if err != nil {
		t.Fatalf("reading stream %s: %v", StreamName, err)
	}
	cfg := s.CachedInfo().Config
	if cfg.Replicas != 3 {
		t.Errorf("%s has %d replicas after restarts, want 3", StreamName, cfg.Replicas)
	}
	if !cfg.DenyDelete || !cfg.DenyPurge {
		t.Errorf("%s has deny_delete=%v deny_purge=%v, want both true",
			StreamName, cfg.DenyDelete, cfg.DenyPurge)
	}
	if cfg.MaxAge != maxAge || cfg.Duplicates != DefaultDuplicates {
		t.Errorf("%s has max_age %v, duplicates %v, want %v, %v",
			StreamName, cfg.MaxAge, cfg.Duplicates, maxAge, DefaultDuplicates)
	}
}
