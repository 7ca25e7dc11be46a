package broker_test

import (
	"context"
	"fmt"
	"net"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"

	"github.com/nodexsec/nodex/libs/broker"
	"github.com/nodexsec/nodex/libs/identity"
)

// freePorts reserves n loopback ports and releases them for the servers.
func freePorts(t *testing.T, n int) []int {
	t.Helper()
	var ports []int
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
		defer l.Close()
	}

	return ports
}

type clusterEnv struct {
	nodes   []*broker.Broker
	configs []broker.NodeConfig
	setup   *identity.Setup
	tls     broker.TLSFiles
}

// startCluster starts three TLS brokers on loopback with one issuer key and
// publishes the bootstrap identities through the first node.
func startCluster(t *testing.T) *clusterEnv {
	t.Helper()
	dir := t.TempDir()
	setup, err := identity.Bootstrap(filepath.Join(dir, "identities"))
	if err != nil {
		t.Fatal(err)
	}
	files, err := broker.GenerateTLS(filepath.Join(dir, "tls"),
		[]string{"localhost", "127.0.0.1"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	issuer, _ := nkeys.CreateAccount()
	seed, _ := issuer.Seed()
	ports := freePorts(t, 6)
	var routes []string
	for i := range 3 {
		routes = append(routes, fmt.Sprintf("nats-route://127.0.0.1:%d", ports[3+i]))
	}

	env := &clusterEnv{setup: setup, tls: files, nodes: make([]*broker.Broker, 3)}
	for i := range 3 {
		env.configs = append(env.configs, broker.NodeConfig{
			Config: broker.Config{
				DataDir: filepath.Join(dir, fmt.Sprintf("n%d", i)), Port: ports[i],
				Root: setup.Root.Public(), Authority: &setup.Authority,
				SweepInterval: time.Second,
			},
			Name: fmt.Sprintf("n%d", i), ClusterName: "nodex-test",
			ClusterHost: "127.0.0.1", ClusterPort: ports[3+i], Routes: routes,
			IssuerSeed: seed, TLS: &files, Replicas: 3,
			ReplicaCheckInterval: 500 * time.Millisecond, JetStreamWait: time.Minute,
		})
	}
	t.Cleanup(func() {
		for _, n := range env.nodes {
			if n != nil {
				n.Shutdown()
			}
		}
	})
	env.start(t)
	if err := setup.Publish(t.Context(), env.nodes[0].Registry()); err != nil {
		t.Fatal(err)
	}
	for _, n := range env.nodes {
		waitFor(t, "demo agent visible", func() bool {
			_, err := n.View().Active(identity.DemoAgentID)
			return err == nil
		})
	}

	return env
}

// start starts every node at once and fails t unless all of them start.
func (e *clusterEnv) start(t *testing.T) {
	t.Helper()
	var wg sync.WaitGroup
	errs := make([]error, len(e.configs))
	for i, cfg := range e.configs {
		wg.Go(func() { e.nodes[i], errs[i] = broker.StartNode(t.Context(), cfg) })
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("starting node %d: %v", i, err)
		}
	}
}

func (e *clusterEnv) connect(t *testing.T, node int, id string, opts ...nats.Option,
) (*nats.Conn, error) {
	t.Helper()
	opts = append([]nats.Option{nats.RootCAs(e.tls.CA)}, opts...)

	return broker.Connect(t.Context(), e.nodes[node].ClientURL(), e.setup.Creds[id], opts...)
}

func TestClusterCalloutOnEveryNode(t *testing.T) {
	e := startCluster(t)
	for i := range e.nodes {
		nc, err := e.connect(t, i, identity.DemoAgentID)
		if err != nil {
			t.Fatalf("connecting to node %d: %v", i, err)
		}
		if !nc.TLSRequired() {
			t.Errorf("node %d accepted a connection without TLS", i)
		}
		nc.Close()
	}
}

func TestClusterRejectsPlainClient(t *testing.T) {
	e := startCluster(t)
	url := "nats://" + e.nodes[1].Server().Addr().String()
	kp, _ := e.setup.Creds[identity.DemoAgentID].NATSKeyPair()
	pub, _ := kp.PublicKey()
	_, err := nats.Connect(url, nats.Nkey(pub, kp.Sign), nats.NoReconnect(),
		nats.Timeout(2*time.Second))
	if err == nil {
		t.Fatal("a client without the CA connected")
	}
}

func TestClusterSuspensionKicksOtherNode(t *testing.T) {
	e := startCluster(t)
	nc, err := e.connect(t, 1, identity.DemoAgentID)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()

	admin := identity.NewAdmin(e.nodes[0].Registry(), e.setup.Root)
	if err := admin.Suspend(t.Context(), identity.DemoAgentID); err != nil {
		t.Fatalf("Suspend: %v", err)
	}
	took := waitFor(t, "connection on node 1 closed", func() bool { return !nc.IsConnected() })
	t.Logf("connection on node 1 closed %s after suspension written on node 0", took)

	if _, err := e.connect(t, 2, identity.DemoAgentID, nats.NoReconnect()); err == nil {
		t.Fatal("suspended identity connected to node 2")
	}
}

func TestClusterRaisesReplicas(t *testing.T) {
	e := startCluster(t)
	js := e.nodes[0].JetStream()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{
		Name: "R1_TEST", Subjects: []string{"r1test.>"}, Storage: jetstream.FileStorage,
	}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "stream raised to three replicas", func() bool {
		s, err := js.Stream(ctx, "R1_TEST")
		return err == nil && s.CachedInfo().Config.Replicas == 3
	})
	s, err := js.Stream(ctx, identity.Bucket)
	if err != nil {
		s, err = js.Stream(ctx, "KV_"+identity.Bucket)
	}
	if err != nil {
		t.Fatal(err)
	}
	if got := s.CachedInfo().Config.Replicas; got != 3 {
		t.Errorf("registry replicas = %d, want 3", got)
	}
}

// TestClusterRestartsWhole stops every node and starts them again on their
// data: each node must wait for the registry stream to elect a leader
// instead of giving up, and clients must be admitted again.
func TestClusterRestartsWhole(t *testing.T) {
	env := startCluster(t)
	for i, n := range env.nodes {
		n.Shutdown()
		env.nodes[i] = nil
	}
	started := time.Now()
	env.start(t)
	t.Logf("cluster restarted in %s", time.Since(started).Round(time.Millisecond))
	// Connections are rejected until a node writes a fresh heartbeat.
	for i := range env.nodes {
		waitFor(t, fmt.Sprintf("connecting to node %d after the restart", i), func() bool {
			nc, err := env.connect(t, i, identity.DemoAgentID, nats.NoReconnect())
			if err != nil {
				return false
			}
			nc.Close()
			return true
		})
	}
}
