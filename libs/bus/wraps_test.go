package bus

import (
	"context"
	"errors"
	"testing"

	"github.com/nodexsec/nodex/libs/envelope"
	"github.com/nodexsec/nodex/libs/testkit"
)

func TestWrapStoreCreateAndGet(t *testing.T) {
	ctx := context.Background()
	js := testkit.JetStream(t, testkit.NATSServer(t))
	ws, err := NewWrapStore(ctx, js, 0)
	if err != nil {
		t.Fatal(err)
	}
	k := envelope.WrapKey{Sender: "codesec", Recipient: envelope.Recipient{
		Type: envelope.RecipientRole, Name: "service:monitor", Version: 2}}
	if _, err := ws.Get(ctx, k); !errors.Is(err, envelope.ErrNotFound) {
		t.Errorf("missing wrap: got %v, want ErrNotFound", err)
	}
	if err := ws.Create(ctx, k, []byte("w1")); err != nil {
		t.Fatalf("creating wrap: %v", err)
	}
	if err := ws.Create(ctx, k, []byte("w2")); !errors.Is(err, envelope.ErrWrapExists) {
		t.Errorf("second create: got %v, want ErrWrapExists", err)
	}
	for name, s := range map[string]*WrapStore{"bound": ws, "agent": BindWrapStore(js)} {
		if got, err := s.Get(ctx, k); err != nil || string(got) != "w1" {
			t.Errorf("%s store: got %q, %v; want w1", name, got, err)
		}
	}
}

func TestWrapStoreReadsLegacyKey(t *testing.T) {
	ctx := context.Background()
	js := testkit.JetStream(t, testkit.NATSServer(t))
	ws, err := NewWrapStore(ctx, js, 0)
	if err != nil {
		t.Fatal(err)
	}
	k := envelope.WrapKey{Sender: "codesec", Recipient: envelope.Recipient{
		Type: envelope.RecipientIdentity, Name: "monitor", Version: 1}}
	kv, err := js.KeyValue(ctx, envelope.WrapBucket)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Create(ctx, k.LegacyString(), []byte("old")); err != nil {
		t.Fatal(err)
	}
	if got, err := ws.Get(ctx, k); err != nil || string(got) != "old" {
		t.Errorf("service store: got %q, %v; want the wrap stored under the older key", got, err)
	}
	// Agents may read only the current layout, which their grant names.
	if _, err := BindWrapStore(js).Get(ctx, k); !errors.Is(err, envelope.ErrNotFound) {
		t.Errorf("agent store: got %v, want ErrNotFound", err)
	}
}
