package kvstore_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/nodexsec/nodex/libs/testkit"
	"github.com/nodexsec/nodex/services/incident/internal/adapters/kvstore"
	"github.com/nodexsec/nodex/services/incident/internal/app"
	"github.com/nodexsec/nodex/services/incident/internal/domain"
)

func newStore(t *testing.T) *kvstore.Store {
	t.Helper()
	s, err := kvstore.Open(context.Background(), testkit.JetStream(t, testkit.NATSServer(t)),
		kvstore.Bucket, 1)
	if err != nil {
		t.Fatalf("opening store: %v", err)
	}

	return s
}

func TestUpdateRejectsStaleRevision(t *testing.T) {
	s := newStore(t)
	ctx := context.Background()
	inc := domain.New("inc-1", domain.APIAbuse, domain.IdentityInfo{ID: "a"}, time.Now())
	rev, err := s.Create(ctx, inc)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Create(ctx, inc); !errors.Is(err, app.ErrConflict) {
		t.Errorf("second create: err = %v, want ErrConflict", err)
	}
	if _, err := s.Update(ctx, inc, rev); err != nil {
		t.Fatalf("update at current revision: %v", err)
	}
	if _, err := s.Update(ctx, inc, rev); !errors.Is(err, app.ErrConflict) {
		t.Errorf("update at stale revision: err = %v, want ErrConflict", err)
	}
	if _, _, err := s.Get(ctx, "inc-missing"); !errors.Is(err, app.ErrNotFound) {
		t.Errorf("get missing: err = %v, want ErrNotFound", err)
	}
	if _, _, err := s.Get(ctx, "inc.*"); !errors.Is(err, app.ErrNotFound) {
		t.Errorf("get with wildcard id: err = %v, want ErrNotFound", err)
	}
}

func TestOpenSlotIsExclusive(t *testing.T) {
	s := newStore(t)
	ctx := context.Background()
	who := "agent with spaces/and.dots"
	if _, err := s.ClaimOpen(ctx, domain.APIAbuse, who, "inc-1"); err != nil {
		t.Fatalf("first claim: %v", err)
	}
	holder, err := s.ClaimOpen(ctx, domain.APIAbuse, who, "inc-2")
	if !errors.Is(err, app.ErrConflict) || holder != "inc-1" {
		t.Fatalf("second claim = %q, %v; want inc-1 and ErrConflict", holder, err)
	}
	if err := s.ReleaseOpen(ctx, domain.APIAbuse, who, "inc-2"); err != nil {
		t.Fatal(err)
	}
	if id, err := s.OpenID(ctx, domain.APIAbuse, who); err != nil || id != "inc-1" {
		t.Fatalf("release by a non-holder freed the slot: %q, %v", id, err)
	}
	if err := s.ReleaseOpen(ctx, domain.APIAbuse, who, "inc-1"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.OpenID(ctx, domain.APIAbuse, who); !errors.Is(err, app.ErrNotFound) {
		t.Errorf("slot after release: err = %v, want ErrNotFound", err)
	}
	if _, err := s.ClaimOpen(ctx, domain.APIAbuse, who, "inc-3"); err != nil {
		t.Errorf("claim after release: %v", err)
	}
}

func TestNextOffenseCounts(t *testing.T) {
	s := newStore(t)
	ctx := context.Background()
	for want := 1; want <= 3; want++ {
		got, err := s.NextOffense(ctx, "agent-demo")
		if err != nil {
			t.Fatal(err)
		}
		if got != want {
			t.Errorf("offence = %d, want %d", got, want)
		}
	}
}
