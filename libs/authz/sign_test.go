package authz

import (
	"context"
	"encoding/json"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nodexsec/nodex/libs/envelope"
	"github.com/nodexsec/nodex/libs/envelope/envtest"
)

func signingWorld(t *testing.T) (*envtest.World, *envtest.Party, *envtest.Party) {
	t.Helper()

	w := envtest.NewWorld(nil)
	policySvc := w.AddParty(t, "policy", "service", SignerRole)
	agent := w.AddParty(t, "agent-1", "agent", "agent")

	return w, policySvc, agent
}

func TestVerifierAcceptsPolicySignature(t *testing.T) {
	w, policySvc, _ := signingWorld(t)
	v := &Verifier{Directory: w.Dir}
	now := time.Now()

	stored, err := Sign(policySvc.Keys, KeyRBAC, []byte(`{"roles":{}}`), now)
	if err != nil {
		t.Fatal(err)
	}
	payload, err := v.Open(context.Background(), KeyRBAC, stored)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	if string(payload) != `{"roles":{}}` {
		t.Errorf("got payload %s", payload)
	}
	if string(Unwrap(stored)) != `{"roles":{}}` {
		t.Errorf("Unwrap returned %s", Unwrap(stored))
	}
}

func TestVerifierRejectsForgeries(t *testing.T) {
	w, policySvc, agent := signingWorld(t)
	now := time.Now()
	good, err := Sign(policySvc.Keys, KeyRBAC, []byte(`{"roles":{}}`), now)
	if err != nil {
		t.Fatal(err)
	}
	byAgent, err := Sign(agent.Keys, KeyRBAC, []byte(`{"roles":{}}`), now)
	if err != nil {
		t.Fatal(err)
	}

	var tampered SignedValue
	if err := json.Unmarshal(good, &tampered); err != nil {
		t.Fatal(err)
	}
	tampered.Payload = json.RawMessage(`{"roles":{"root":{}}}`)
	tamperedRaw, _ := json.Marshal(tampered)

	tests := []struct {
		name, key string
		stored    []byte
	}{
		{"unsigned", KeyRBAC, []byte(`{"roles":{}}`)},
		{"signed by a non-policy identity", KeyRBAC, byAgent},
		{"payload changed", KeyRBAC, tamperedRaw},
		{"moved to another key", KeyPolicy, good},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v := &Verifier{Directory: w.Dir}
			if _, err := v.Open(context.Background(), tt.key, tt.stored); !errors.Is(err,
				ErrBadSignature) {
				t.Errorf("got %v, want ErrBadSignature", err)
			}
		})
	}
}

func TestVerifierRejectsRollbackAndSuspendedSigner(t *testing.T) {
	w, policySvc, _ := signingWorld(t)
	v := &Verifier{Directory: w.Dir}
	ctx := context.Background()
	now := time.Now()

	older, _ := Sign(policySvc.Keys, KeyRBAC, []byte(`{"v":1}`), now)
	newer, _ := Sign(policySvc.Keys, KeyRBAC, []byte(`{"v":2}`), now.Add(time.Second))
	if _, err := v.Open(ctx, KeyRBAC, newer); err != nil {
		t.Fatalf("newer: %v", err)
	}
	if _, err := v.Open(ctx, KeyRBAC, older); !errors.Is(err, ErrBadSignature) {
		t.Errorf("replayed older value: got %v, want ErrBadSignature", err)
	}

	w.Dir.SetParty(envelope.Party{ID: "policy", Kind: "service",
		Status: envelope.StatusSuspended, Roles: []string{SignerRole}})
	later, _ := Sign(policySvc.Keys, KeyRBAC, []byte(`{"v":3}`), now.Add(2*time.Second))
	if _, err := v.Open(ctx, KeyRBAC, later); !errors.Is(err, ErrBadSignature) {
		t.Errorf("suspended signer: got %v, want ErrBadSignature", err)
	}
}

func TestWatchKVVerifiesSignatures(t *testing.T) {
	w, policySvc, agent := signingWorld(t)
	kv := policyBucket(t)
	ctx := context.Background()

	put := func(signer Signer, key string, v any, at time.Time) {
		t.Helper()
		payload, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		stored, err := Sign(signer, key, payload, at)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := kv.Put(ctx, key, stored); err != nil {
			t.Fatal(err)
		}
	}
	now := time.Now()
	put(policySvc.Keys, KeyPolicy, PolicySet{Modules: map[string]string{"a.rego": rbacPolicy}}, now)
	put(policySvc.Keys, KeyRBAC, listRBAC(nil), now)

	var failures atomic.Int32
	e := New(Options{Timeout: testTimeout})
	watcher, err := WatchKV(ctx, kv, e, WatchOptions{
		Verifier: &Verifier{Directory: w.Dir},
		OnError:  func(error) { failures.Add(1) },
	})
	if err != nil {
		t.Fatalf("WatchKV: %v", err)
	}
	t.Cleanup(watcher.Stop)

	in := operatorInput()
	in.Subject.Roles = nil
	if d, _ := e.Decide(ctx, in); d.Allow {
		t.Fatal("allowed before any binding")
	}

	// A binding signed by an agent, or stored unsigned, must not apply. The
	// watch may skip a value that is replaced at once, so each forgery waits
	// for its own rejection.
	waitFailures := func(n int32) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for failures.Load() < n && time.Now().Before(deadline) {
			time.Sleep(5 * time.Millisecond)
		}
		if failures.Load() < n {
			t.Fatalf("got %d verification failures, want %d", failures.Load(), n)
		}
	}
	put(agent.Keys, KeyRBAC, listRBAC(map[string][]string{"op-1": {"lister"}}), now.Add(time.Second))
	waitFailures(1)
	forged, _ := json.Marshal(listRBAC(map[string][]string{"op-1": {"lister"}}))
	if _, err := kv.Put(ctx, KeyRBAC, forged); err != nil {
		t.Fatal(err)
	}
	waitFailures(2)
	if d, _ := e.Decide(ctx, in); d.Allow {
		t.Error("forged binding took effect")
	}

	put(policySvc.Keys, KeyRBAC, listRBAC(map[string][]string{"op-1": {"lister"}}),
		now.Add(2*time.Second))
	waitFor(t, e, in, true, 10*time.Second)
}
