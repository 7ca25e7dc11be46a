package bus_test

import (
	"context"
	"crypto/ed25519"
	"crypto/hpke"
	"fmt"
	"os"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/nodexsec/nodex/libs/bus"
	"github.com/nodexsec/nodex/libs/envelope"
)

// Example runs a codesec handler and an agent's request over an embedded
// server. Production code gets its Directory and Keys from libs/identity.
func Example() {
	dir, err := os.MkdirTemp("", "bus-example")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer os.RemoveAll(dir)
	srv, _ := server.NewServer(&server.Options{Host: "127.0.0.1", Port: server.RANDOM_PORT,
		JetStream: true, StoreDir: dir, NoLog: true, NoSigs: true})
	go srv.Start()
	srv.ReadyForConnections(10 * time.Second)
	defer srv.Shutdown()

	ctx := context.Background()
	registry := envelope.NewStaticDirectory()
	newClient := func(id string, roles ...string) *bus.Client {
		nc, _ := nats.Connect(srv.ClientURL())
		pub, priv, _ := ed25519.GenerateKey(nil)
		registry.SetParty(envelope.Party{ID: id, Kind: "service",
			Status: envelope.StatusActive, Roles: roles})
		registry.SetSigningKey(id, envelope.SigningKey{Version: 1, Public: pub})
		keys := envelope.NewStaticKeys(id, 1, priv)
		for _, role := range roles {
			roleKey, _ := hpke.MLKEM768X25519().GenerateKey()
			registry.SetRoleEpoch(envelope.RoleEpoch{Role: role, Epoch: 1,
				Public: roleKey.PublicKey()})
			keys.AddRoleKey(role, 1, roleKey)
		}
		js, _ := jetstream.New(nc)
		wraps, _ := bus.NewWrapStore(ctx, js, 0)
		codec, _ := envelope.New(envelope.Config{Keys: keys, Directory: registry, Wraps: wraps})
		c, _ := bus.New(bus.Config{Conn: nc, Codec: codec})
		return c
	}
	codesec := newClient("codesec-1", "service:codesec")
	agent := newClient("agent-1")

	type submit struct {
		Language string `json:"language"`
	}
	_ = codesec.Handle("nodex.v1.codesec.submit", "codesec",
		func(_ context.Context, r *bus.Request) (any, error) {
			var in submit
			if err := r.Decode(&in); err != nil {
				return nil, err
			}
			return map[string]string{"from": r.Sender, "language": in.Language}, nil
		})
	_ = codesec.NATS().Flush()

	var out map[string]string
	err = agent.Request(ctx, "nodex.v1.codesec.submit", "service:codesec",
		submit{Language: "python"}, &out)
	fmt.Println(out["from"], out["language"], err)
	_ = codesec.Drain(ctx)
	// Output: agent-1 python <nil>
}
