package testkit

import (
	"fmt"
	"net"
	"net/url"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// NATSCluster starts n embedded nats-servers with JetStream that form one
// cluster on loopback, each storing its data under t.TempDir(), and waits
// until JetStream has a meta leader. Like [NATSServer] it has no
// authentication. The servers shut down when the test ends.
func NATSCluster(t testing.TB, n int) []*server.Server {
	t.Helper()
	ports := freePorts(t, n)
	var routes []*url.URL
	for _, p := range ports {
		routes = append(routes, &url.URL{Scheme: "nats-route", Host: fmt.Sprintf("127.0.0.1:%d", p)})
	}

	servers := make([]*server.Server, n)
	for i := range servers {
		srv, err := server.NewServer(&server.Options{
			ServerName: fmt.Sprintf("testkit-%d", i),
			Host:       "127.0.0.1",
			Port:       server.RANDOM_PORT,
			JetStream:  true,
			StoreDir:   t.TempDir(),
			NoLog:      true,
			NoSigs:     true,
			Cluster:    server.ClusterOpts{Name: "testkit", Host: "127.0.0.1", Port: ports[i]},
			Routes:     routes,
		})
		if err != nil {
			t.Fatalf("creating cluster node %d: %v", i, err)
		}
		servers[i] = srv
		t.Cleanup(func() {
			srv.Shutdown()
			srv.WaitForShutdown()
		})
		go srv.Start()
	}
	deadline := time.Now().Add(30 * time.Second)
	for _, srv := range servers {
		if !srv.ReadyForConnections(time.Until(deadline)) {
			t.Fatalf("cluster node %s not ready after 30s", srv.Name())
		}
	}
	for !hasMetaLeader(servers) {
		if time.Now().After(deadline) {
			t.Fatal("cluster has no JetStream meta leader after 30s")
		}
		time.Sleep(50 * time.Millisecond)
	}

	return servers
}

// hasMetaLeader reports whether one node is the JetStream meta leader and
// every node is current with it.
func hasMetaLeader(servers []*server.Server) bool {
	leaders := 0
	for _, srv := range servers {
		if srv.JetStreamIsLeader() {
			leaders++
		}
		if !srv.JetStreamIsCurrent() {
			return false
		}
	}

	return leaders == 1
}

// freePorts reserves n loopback ports and releases them for the caller.
func freePorts(t testing.TB, n int) []int {
	t.Helper()
	ports := make([]int, n)
	for i := range ports {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatalf("reserving a loopback port: %v", err)
		}
		ports[i] = l.Addr().(*net.TCPAddr).Port
		defer l.Close()
	}

	return ports
}
