package stack_test

import (
	"context"
	"testing"
	"time"

	"github.com/nodexsec/nodex/libs/identity"
	"github.com/nodexsec/nodex/libs/stack"
	"github.com/nodexsec/nodex/libs/testkit"
)

// TestStackRenewsDelegation moves the stack's clock into the renewal
// margin and checks that the stack renews the delegation by itself and that
// a party's view trusts the renewal and stays fresh.
func TestStackRenewsDelegation(t *testing.T) {
	ctx := context.Background()
	clock := testkit.NewClock(time.Now())
	s, err := stack.Start(ctx, stack.Config{
		Dir: t.TempDir(), HeartbeatInterval: 200 * time.Millisecond,
		RenewCheckInterval: 20 * time.Millisecond, Now: clock.Now,
	})
	if err != nil {
		t.Fatalf("starting stack: %v", err)
	}
	t.Cleanup(s.Close)
	p, err := s.Open(ctx, identity.DemoAgentID, false)
	if err != nil {
		t.Fatalf("opening agent: %v", err)
	}
	defer p.Close(ctx)
	first, err := p.View.Delegation()
	if err != nil {
		t.Fatalf("Delegation: %v", err)
	}

	clock.Advance(identity.AuthorityValidity - identity.DefaultRenewBefore + time.Hour)
	want := clock.Now().Add(identity.AuthorityValidity)
	deadline := time.Now().Add(10 * time.Second)
	for {
		d, err := p.View.Delegation()
		if err != nil {
			t.Fatalf("Delegation: %v", err)
		}
		if !d.NotAfter.Before(want) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("party delegation expires %s after 10s, want a renewal to %s or later "+
				"(first %s)", d.NotAfter, want, first.NotAfter)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := p.View.Fresh(); err != nil {
		t.Fatalf("party view after renewal: %v", err)
	}
	if err := s.Broker.View().Fresh(); err != nil {
		t.Fatalf("broker view after renewal: %v", err)
	}
	if n, err := p.View.Rejected(); n != 0 {
		t.Fatalf("party view rejected %d entries, last %v; want 0", n, err)
	}
}
