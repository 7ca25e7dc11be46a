package broker

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/nodexsec/nodex/libs/identity"
)

// startSweepBroker starts a broker whose sweeps run only when a test calls
// them, publishes the bootstrap identities and waits for the demo agent.
func startSweepBroker(t *testing.T) (*Broker, *identity.Setup) {
	t.Helper()
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

	return b, setup
}

// connectUntracked connects as the demo agent and then makes the broker
// forget the connection, as if its connect event had been lost.
func connectUntracked(t *testing.T, b *Broker, setup *identity.Setup) *nats.Conn {
	t.Helper()
	nc, err := Connect(context.Background(), b.ClientURL(), setup.Creds[identity.DemoAgentID],
		nats.NoReconnect())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	time.Sleep(100 * time.Millisecond)
	b.conns.mu.Lock()
	clear(b.conns.byID)
	b.conns.mu.Unlock()

	return nc
}

func TestSweepClosesUntrackedConnection(t *testing.T) {
	ctx := context.Background()
	b, setup := startSweepBroker(t)
	nc := connectUntracked(t, b, setup)

	if err := identity.NewAdmin(b.Registry(), setup.Root).Suspend(ctx, identity.DemoAgentID); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for nc.IsConnected() {
		if time.Now().After(deadline) {
			t.Fatal("untracked connection of a suspended identity still open after 5s")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestSweepClosesConnectionWithStalePermissions changes the roles of an
// identity whose connection the broker does not track, as when the change
// lands before the connection's connect event. The sweep must find the
// connection by the permission tag the callout gave it. A connection whose
// permissions still apply must stay open.
func TestSweepClosesConnectionWithStalePermissions(t *testing.T) {
	ctx := context.Background()
	b, setup := startSweepBroker(t)
	nc := connectUntracked(t, b, setup)

	if _, err := b.sweep(); err != nil {
		t.Fatalf("sweep: %v", err)
	}
	time.Sleep(100 * time.Millisecond)
	if !nc.IsConnected() {
		t.Fatal("the sweep closed a connection whose permissions still hold")
	}

	admin := identity.NewAdmin(b.Registry(), setup.Root)
	ident, err := admin.Get(ctx, identity.DemoAgentID)
	if err != nil {
		t.Fatal(err)
	}
	roles := append(ident.Roles, "key-reader:openai")
	if err := admin.SetRoles(ctx, identity.DemoAgentID, roles); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		current, err := b.View().Identity(identity.DemoAgentID)
		if err == nil && current.HasRole("key-reader:openai") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("role change not in the view after 5s: %v", err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if _, err := b.sweep(); err != nil {
		t.Fatalf("sweep: %v", err)
	}
	deadline = time.Now().Add(5 * time.Second)
	for nc.IsConnected() {
		if time.Now().After(deadline) {
			t.Fatal("connection granted before the role change still open after the sweep")
		}
		time.Sleep(10 * time.Millisecond)
	}
}
