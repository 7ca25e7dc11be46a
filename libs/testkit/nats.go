// Package testkit holds helpers that tests across NodeX share: an embedded
// nats-server with JetStream in a temporary directory, a settable clock,
// and small assertions.
package testkit

import (
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// NATSServer starts an embedded nats-server with JetStream on a random
// loopback port, storing its data under t.TempDir(). The server has no
// authentication; tests of authorization start their own server through
// libs/bus. The server shuts down when the test ends.
func NATSServer(t testing.TB) *server.Server {
	t.Helper()

	return NATSServerAt(t, t.TempDir())
}

// NATSServerAt is like [NATSServer] but stores JetStream data under dir, so a
// test can stop a server and start another on the same state.
func NATSServerAt(t testing.TB, dir string) *server.Server {
	t.Helper()

	opts := &server.Options{
		ServerName: "testkit",
		Host:       "127.0.0.1",
		Port:       server.RANDOM_PORT,
		JetStream:  true,
		StoreDir:   dir,
		NoLog:      true,
		NoSigs:     true,
		// The embedded default syncs every write; tests do the same so that
		// they exercise the configuration that ships.
		SyncAlways: true,
	}
	srv, err := server.NewServer(opts)
	if err != nil {
		t.Fatalf("creating embedded nats-server: %v", err)
	}
	go srv.Start()
	if !srv.ReadyForConnections(10 * time.Second) {
		srv.Shutdown()
		t.Fatal("embedded nats-server not ready after 10s")
	}
	t.Cleanup(func() {
		srv.Shutdown()
		srv.WaitForShutdown()
	})

	return srv
}

// Connect opens a plain client connection to srv that closes when the test
// ends.
func Connect(t testing.TB, srv *server.Server, opts ...nats.Option) *nats.Conn {
	t.Helper()

	nc, err := nats.Connect(srv.ClientURL(), opts...)
	if err != nil {
		t.Fatalf("connecting to embedded nats-server: %v", err)
	}
	t.Cleanup(nc.Close)

	return nc
}

// JetStream returns a JetStream context on a new connection to srv.
func JetStream(t testing.TB, srv *server.Server) jetstream.JetStream {
	t.Helper()

	js, err := jetstream.New(Connect(t, srv))
	if err != nil {
		t.Fatalf("creating JetStream context: %v", err)
	}

	return js
}
