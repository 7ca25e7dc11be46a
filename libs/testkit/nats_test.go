package testkit

import (
	"context"
	"testing"

	"github.com/nats-io/nats.go/jetstream"
)

func TestNATSServerJetStream(t *testing.T) {
	srv := NATSServer(t)
	js := JetStream(t, srv)

	kv, err := js.CreateKeyValue(context.Background(), jetstream.KeyValueConfig{Bucket: "probe"})
	if err != nil {
		t.Fatalf("creating KV bucket: %v", err)
	}
	if _, err := kv.Put(context.Background(), "k", []byte("v")); err != nil {
		t.Fatalf("putting key: %v", err)
	}
	got, err := kv.Get(context.Background(), "k")
	if err != nil {
		t.Fatalf("getting key: %v", err)
	}
	if string(got.Value()) != "v" {
		t.Errorf("got %q, want %q", got.Value(), "v")
	}
}
