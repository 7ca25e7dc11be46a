package broker

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/nodexsec/nodex/libs/identity"
)

func TestSweepClosesUntrackedConnection(t *testing.T) {
	ctx := context.Background()
	setup, err := identity.Bootstrap(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	b, err := Start(ctx, Config{
		DataDir: t.TempDir(), Root: setup.Root.Public(), Authority: &setup.Authority,
		SweepInterval: time.Hour,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Shutdown)
	if err := setup.Publish(ctx, b.Registry()); err != nil {
		t.Fatal(err)
	}
	// The default heartbeat interval is 2 s, and only a heartbeat after the
	// registry's publication refreshes the view. The bound is generous for
	// a loaded host.
	deadline := time.Now().Add(30 * time.Second)
	for {
		_, err := b.View().Active(identity.DemoAgentID)
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("demo agent not in view: %v", err)
		}
		time.Sleep(10 * time.Millisecond)
	}

	nc, err := Connect(ctx, b.ClientURL(), setup.Creds[identity.DemoAgentID], nats.NoReconnect())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	time.Sleep(100 * time.Millisecond)
	// Forget the connection, as if its connect event had been lost.
	b.conns.mu.Lock()
	clear(b.conns.byID)
	b.conns.mu.Unlock()

	if err := identity.NewAdmin(b.Registry(), setup.Root).Suspend(ctx, identity.DemoAgentID); err != nil {
		t.Fatal(err)
	}
	deadline = time.Now().Add(5 * time.Second)
	for nc.IsConnected() {
		if time.Now().After(deadline) {
			t.Fatal("untracked connection of a suspended identity still open after 5s")
		}
		time.Sleep(10 * time.Millisecond)
	}
}
