package identity_test

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nodexsec/nodex/libs/identity"
	"github.com/nodexsec/nodex/libs/testkit"
)

// newClockFixture returns a fixture whose admin and heartbeat writer read
// clock, and a view on the same clock.
func newClockFixture(t *testing.T) (*fixture, *testkit.Clock, *identity.View) {
	t.Helper()

	// Publish wrote a heartbeat at the real time, so the clock starts after.
	f := newFixture(t)
	clock := testkit.NewClock(time.Now())
	f.admin.Now = clock.Now
	f.auth.Now = clock.Now
	v := f.watch(t, identity.ViewOptions{Now: clock.Now})

	return f, clock, v
}

// heartbeatFresh writes one heartbeat and waits until v counts it fresh.
func heartbeatFresh(t *testing.T, f *fixture, v *identity.View) {
	t.Helper()

	if err := f.auth.Heartbeat(context.Background()); err != nil {
		t.Fatalf("Heartbeat: %v", err)
	}
	eventually(t, "view fresh after heartbeat", func() bool { return v.Fresh() == nil })
}

func renew(t *testing.T, f *fixture) (*identity.Authority, bool) {
	t.Helper()

	d, renewed, err := f.admin.RenewAuthority(context.Background(), f.setup.Authority.Public(),
		identity.AuthorityValidity, identity.DefaultRenewBefore)
	if err != nil {
		t.Fatalf("RenewAuthority: %v", err)
	}

	return d, renewed
}

func TestDelegationRenewedBeforeExpiry(t *testing.T) {
	f, clock, v := newClockFixture(t)
	heartbeatFresh(t, f, v)
	first, err := v.Delegation()
	if err != nil {
		t.Fatalf("Delegation: %v", err)
	}

	if _, renewed := renew(t, f); renewed {
		t.Fatal("RenewAuthority renewed a fresh delegation, want no write")
	}
	clock.Advance(identity.AuthorityValidity - identity.DefaultRenewBefore + time.Hour)
	d, renewed := renew(t, f)
	if !renewed {
		t.Fatal("RenewAuthority did not renew a delegation with less than the margin left")
	}
	if want := clock.Now().Add(identity.AuthorityValidity); !d.NotAfter.Equal(want.UTC()) {
		t.Fatalf("renewed NotAfter %s, want %s", d.NotAfter, want)
	}
	eventually(t, "view trusts the renewed delegation", func() bool {
		got, err := v.Delegation()
		return err == nil && got.NotAfter.Equal(d.NotAfter)
	})

	// Past the first delegation's expiry, heartbeats still refresh the view.
	clock.Advance(identity.DefaultRenewBefore)
	if !clock.Now().After(first.NotAfter) {
		t.Fatalf("clock %s not past the first delegation's expiry %s", clock.Now(),
			first.NotAfter)
	}
	heartbeatFresh(t, f, v)
	if n, err := v.Rejected(); n != 0 {
		t.Fatalf("view rejected %d entries, last %v; want 0", n, err)
	}
}

func TestViewRejectsExpiredDelegation(t *testing.T) {
	f, clock, v := newClockFixture(t)
	heartbeatFresh(t, f, v)
	f.auth.Delegation = v.Delegation

	clock.Advance(identity.AuthorityValidity + time.Minute)
	if err := f.auth.Heartbeat(context.Background()); err != nil {
		t.Fatalf("Heartbeat: %v", err)
	}
	eventually(t, "heartbeat under an expired delegation rejected", func() bool {
		n, err := v.Rejected()
		return n > 0 && errors.Is(err, identity.ErrNoAuthority)
	})
	if err := v.Fresh(); !errors.Is(err, identity.ErrStale) {
		t.Fatalf("Fresh: got %v, want ErrStale", err)
	}
	if _, err := v.Active(identity.DemoAgentID); !errors.Is(err, identity.ErrStale) {
		t.Fatalf("Active: got %v, want ErrStale", err)
	}
	if err := f.auth.CheckDelegation(); !errors.Is(err, identity.ErrNoAuthority) {
		t.Fatalf("CheckDelegation: got %v, want ErrNoAuthority", err)
	}
}

func TestViewRejectsLowerDelegationVersion(t *testing.T) {
	f, clock, v := newClockFixture(t)
	heartbeatFresh(t, f, v)
	kve, err := f.kv.Get(context.Background(), identity.KeyAuthority)
	if err != nil {
		t.Fatalf("reading authority: %v", err)
	}
	old := kve.Value()

	clock.Advance(identity.AuthorityValidity - identity.DefaultRenewBefore + time.Hour)
	d, _ := renew(t, f)
	eventually(t, "view trusts the renewed delegation", func() bool {
		got, err := v.Delegation()
		return err == nil && got.NotAfter.Equal(d.NotAfter)
	})

	// A root-signed delegation with a version at or below the accepted one
	// is a rollback, even with a later expiry.
	rollback, err := f.setup.Root.Sign(&identity.Record{
		Key: identity.KeyAuthority, Version: 1, IssuedAt: clock.Now(),
		Authority: &identity.Authority{
			Key: f.setup.Authority.Public(), NotAfter: clock.Now().Add(365 * 24 * time.Hour),
		},
	})
	if err != nil {
		t.Fatalf("Sign: %v", err)
	}
	for _, value := range [][]byte{old, rollback.Marshal()} {
		if _, err := f.kv.Put(context.Background(), identity.KeyAuthority, value); err != nil {
			t.Fatalf("Put: %v", err)
		}
	}
	eventually(t, "both rollbacks rejected", func() bool {
		n, err := v.Rejected()
		return n >= 2 && errors.Is(err, identity.ErrRollback)
	})
	got, err := v.Delegation()
	if err != nil || !got.NotAfter.Equal(d.NotAfter) {
		t.Fatalf("Delegation after rollback: got %v, %v; want NotAfter %s", got, err, d.NotAfter)
	}
}

func TestViewLoadsDowngradeBeforeRenewal(t *testing.T) {
	f, clock, writerView := newClockFixture(t)
	f.auth.Digest = writerView.Digest
	ctx := context.Background()
	if err := f.auth.Contain(ctx, identity.DemoAgentID, identity.StatusSuspended); err != nil {
		t.Fatalf("Contain: %v", err)
	}
	clock.Advance(identity.AuthorityValidity - identity.DefaultRenewBefore + time.Hour)
	d, _ := renew(t, f)
	eventually(t, "writer view trusts the renewed delegation", func() bool {
		got, err := writerView.Delegation()
		return err == nil && got.NotAfter.Equal(d.NotAfter)
	})
	heartbeatFresh(t, f, writerView)

	// The stream now holds the downgrade before the delegation that
	// verifies it, which a view started now reads in that order.
	v := f.watch(t, identity.ViewOptions{Now: clock.Now})
	if err := v.Fresh(); err != nil {
		t.Fatalf("Fresh right after loading: %v", err)
	}
	clock.Advance(time.Second)
	heartbeatFresh(t, f, v)
	if n, err := v.Rejected(); n != 0 {
		t.Fatalf("view rejected %d entries, last %v; want 0", n, err)
	}
	ident, err := v.Identity(identity.DemoAgentID)
	if err != nil {
		t.Fatalf("Identity: %v", err)
	}
	if ident.Status != identity.StatusSuspended {
		t.Fatalf("status %s, want %s", ident.Status, identity.StatusSuspended)
	}
	if n, err := v.Rejected(); n != 0 {
		t.Fatalf("view rejected %d entries, last %v; want 0", n, err)
	}
}

func TestHeartbeatWriterWarnsNearExpiry(t *testing.T) {
	f, clock, v := newClockFixture(t)
	f.auth.Delegation = v.Delegation
	if err := f.auth.CheckDelegation(); err != nil {
		t.Fatalf("CheckDelegation on a new delegation: %v", err)
	}

	clock.Advance(identity.AuthorityValidity - identity.DefaultWarnBefore + time.Hour)
	if err := f.auth.CheckDelegation(); !errors.Is(err, identity.ErrAuthorityExpiring) {
		t.Fatalf("CheckDelegation: got %v, want ErrAuthorityExpiring", err)
	}

	var mu sync.Mutex
	var warnings, expiries int
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		f.auth.RunHeartbeat(ctx, 5*time.Millisecond, func(err error) {
			mu.Lock()
			defer mu.Unlock()
			switch {
			case errors.Is(err, identity.ErrAuthorityExpiring):
				warnings++
			case errors.Is(err, identity.ErrNoAuthority):
				expiries++
			}
		})
	}()
	count := func() int {
		mu.Lock()
		defer mu.Unlock()
		return warnings
	}
	eventually(t, "first warning", func() bool { return count() == 1 })
	time.Sleep(100 * time.Millisecond)
	if got := count(); got != 1 {
		t.Fatalf("%d warnings within one report interval, want 1", got)
	}
	clock.Advance(identity.DelegationReportEvery)
	eventually(t, "second warning after the report interval", func() bool { return count() == 2 })

	// The expiry is reported at once, although a warning came just before.
	clock.Advance(identity.DefaultWarnBefore)
	eventually(t, "expiry reported", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return expiries == 1
	})

	// The writer picks up the renewal from its view without a restart.
	d, _ := renew(t, f)
	eventually(t, "warning ends after renewal", func() bool {
		got, err := v.Delegation()
		return err == nil && got.NotAfter.Equal(d.NotAfter) && f.auth.CheckDelegation() == nil
	})
	cancel()
	<-done
}

// TestMissingDelegationReportedAfterGrace checks that a writer started
// before the first delegation is published stays quiet for the grace
// period, then reports the missing delegation.
func TestMissingDelegationReportedAfterGrace(t *testing.T) {
	f, clock, _ := newClockFixture(t)
	f.auth.Delegation = func() (*identity.Authority, error) {
		return nil, identity.ErrNoAuthority
	}
	var reports atomic.Int64
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		f.auth.RunHeartbeat(ctx, 5*time.Millisecond, func(err error) {
			if errors.Is(err, identity.ErrNoAuthority) {
				reports.Add(1)
			}
		})
	}()
	defer func() {
		cancel()
		<-done
	}()

	time.Sleep(100 * time.Millisecond)
	if got := reports.Load(); got != 0 {
		t.Fatalf("%d reports within the grace period, want 0", got)
	}
	clock.Advance(identity.DelegationGrace)
	eventually(t, "report after the grace period", func() bool { return reports.Load() == 1 })
}
