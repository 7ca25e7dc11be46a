package authz

import (
	"context"
	"encoding/json"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/nodexsec/nodex/libs/testkit"
)

// rbacPolicy allows a request when one of the subject's effective roles
// (input roles plus bindings) is defined with the requested action.
const rbacPolicy = `package nodex.authz

roles contains r if some r in input.subject.roles

roles contains r if some r in data.nodex.rbac.bindings[input.subject.id]

allowed if {
	some r in roles
	some p in data.nodex.rbac.roles[r].permissions
	input.action in p.actions
}

decision := {"allow": true, "reasons": ["granted"]} if allowed
else := {"allow": false, "reasons": ["not granted"]}
`

func policyBucket(t *testing.T) jetstream.KeyValue {
	t.Helper()

	js := testkit.JetStream(t, testkit.NATSServer(t))
	kv, err := js.CreateKeyValue(context.Background(), jetstream.KeyValueConfig{Bucket: KVBucket})
	if err != nil {
		t.Fatalf("creating bucket: %v", err)
	}

	return kv
}

func putJSON(t *testing.T, kv jetstream.KeyValue, key string, v any) {
	t.Helper()

	b, err := json.Marshal(v)
	if err != nil {
		t.Fatalf("encoding %s: %v", key, err)
	}
	if _, err := kv.Put(context.Background(), key, b); err != nil {
		t.Fatalf("putting %s: %v", key, err)
	}
}

func listRBAC(bindings map[string][]string) RBAC {
	return RBAC{
		Roles: map[string]Role{"lister": {
			Permissions: []Permission{{Resource: "key", Actions: []string{"list"}}},
		}},
		Bindings: bindings,
	}
}

// waitFor polls decide until it returns want, failing after deadline. It
// returns how long the change took to reach the engine.
func waitFor(t *testing.T, e *Engine, in Input, want bool, deadline time.Duration) time.Duration {
	t.Helper()

	start := time.Now()
	for time.Since(start) < deadline {
		d, _ := e.Decide(context.Background(), in)
		if d.Allow == want {
			return time.Since(start)
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatalf("decision did not become allow=%v within %s", want, deadline)

	return 0
}

func TestWatchKVLoadsAndReloads(t *testing.T) {
	kv := policyBucket(t)
	putJSON(t, kv, KeyPolicy, PolicySet{Modules: map[string]string{"a.rego": rbacPolicy}})
	putJSON(t, kv, KeyRBAC, listRBAC(map[string][]string{"op-1": {"lister"}}))

	e := New(Options{Timeout: testTimeout})
	w, err := WatchKV(context.Background(), kv, e, WatchOptions{})
	if err != nil {
		t.Fatalf("WatchKV: %v", err)
	}
	t.Cleanup(w.Stop)

	in := operatorInput()
	in.Subject.Roles = nil
	d, err := e.Decide(context.Background(), in)
	if err != nil || !d.Allow {
		t.Fatalf("got %+v, %v; want allow through the binding", d, err)
	}
	if d.Revision != "policy@1/rbac@2" {
		t.Errorf("got revision %q, want policy@1/rbac@2", d.Revision)
	}

	// Removing the binding must deny within a generous deadline.
	putJSON(t, kv, KeyRBAC, listRBAC(nil))
	took := waitFor(t, e, in, false, 10*time.Second)
	t.Logf("binding removal reached the engine in %s", took)
}

func TestWatchKVKeepsLastGoodSet(t *testing.T) {
	kv := policyBucket(t)
	putJSON(t, kv, KeyPolicy, PolicySet{Modules: map[string]string{"a.rego": rbacPolicy}})
	putJSON(t, kv, KeyRBAC, listRBAC(map[string][]string{"op-1": {"lister"}}))

	var failures atomic.Int32
	e := New(Options{Timeout: testTimeout})
	w, err := WatchKV(context.Background(), kv, e, WatchOptions{
		OnError: func(error) { failures.Add(1) },
	})
	if err != nil {
		t.Fatalf("WatchKV: %v", err)
	}
	t.Cleanup(w.Stop)

	putJSON(t, kv, KeyPolicy, PolicySet{Modules: map[string]string{"a.rego": "package nodex.authz\n\ndecision := {"}})
	deadline := time.Now().Add(10 * time.Second)
	for failures.Load() == 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if failures.Load() == 0 {
		t.Fatal("broken policy set reported no error")
	}
	if !errors.Is(w.Err(), ErrInvalidPolicySet) {
		t.Errorf("got Err %v, want ErrInvalidPolicySet", w.Err())
	}

	in := operatorInput()
	d, err := e.Decide(context.Background(), in)
	if err != nil || !d.Allow || d.Revision != "policy@1/rbac@2" {
		t.Errorf("got %+v, %v; want allow by policy@1/rbac@2", d, err)
	}

	if err := kv.Delete(context.Background(), KeyPolicy); err != nil {
		t.Fatalf("deleting policy: %v", err)
	}
	deadline = time.Now().Add(10 * time.Second)
	for failures.Load() < 2 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	d, err = e.Decide(context.Background(), in)
	if err != nil || !d.Allow {
		t.Errorf("after delete got %+v, %v; want the last good set to allow", d, err)
	}
}

func TestWatchKVEmptyBucketDenies(t *testing.T) {
	kv := policyBucket(t)

	e := New(Options{Timeout: testTimeout})
	w, err := WatchKV(context.Background(), kv, e, WatchOptions{})
	if err != nil {
		t.Fatalf("WatchKV: %v", err)
	}
	t.Cleanup(w.Stop)

	_, err = e.Decide(context.Background(), operatorInput())
	if !errors.Is(err, ErrNoPolicy) {
		t.Fatalf("got error %v, want ErrNoPolicy", err)
	}

	putJSON(t, kv, KeyPolicy, PolicySet{Modules: map[string]string{"a.rego": allowOperatorPolicy}})
	waitFor(t, e, operatorInput(), true, 10*time.Second)
}

func TestRBACValidate(t *testing.T) {
	good := listRBAC(map[string][]string{"op-1": {"lister", "key-reader:openai"}})
	if err := good.Validate(); err != nil {
		t.Fatalf("valid role data rejected: %v", err)
	}

	tests := []struct {
		name string
		rbac RBAC
	}{
		{"upper-case role", RBAC{Roles: map[string]Role{"Lister": good.Roles["lister"]}}},
		{"no permissions", RBAC{Roles: map[string]Role{"x": {}}}},
		{"bad kind", RBAC{Roles: map[string]Role{"x": {Kinds: []string{"robot"},
			Permissions: good.Roles["lister"].Permissions}}}},
		{"bad window", RBAC{Roles: map[string]Role{"x": {Permissions: []Permission{{
			Resource: "key", Actions: []string{"list"}, Window: &Window{StartHour: 9, EndHour: 9},
		}}}}}},
		{"bad day", RBAC{Roles: map[string]Role{"x": {Permissions: []Permission{{
			Resource: "key", Actions: []string{"list"},
			Window: &Window{StartHour: 9, EndHour: 17, Days: []string{"monday"}},
		}}}}}},
		{"bad action", RBAC{Roles: map[string]Role{"x": {Permissions: []Permission{{
			Resource: "key", Actions: []string{"List"},
		}}}}}},
		{"bad binding id", RBAC{Bindings: map[string][]string{"a/b": {"x"}}}},
		{"bad binding role", RBAC{Bindings: map[string][]string{"a": {"X"}}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.rbac.Validate(); !errors.Is(err, ErrInvalidRBAC) {
				t.Errorf("got %v, want ErrInvalidRBAC", err)
			}
		})
	}
}

func TestOpenWaitsForBucket(t *testing.T) {
	js := testkit.JetStream(t, testkit.NATSServer(t))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	go func() {
		time.Sleep(300 * time.Millisecond)
		kv, err := js.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: KVBucket})
		if err != nil {
			t.Errorf("creating bucket: %v", err)
			return
		}
		b, _ := json.Marshal(PolicySet{Modules: map[string]string{"a.rego": allowOperatorPolicy}})
		if _, err := kv.Put(ctx, KeyPolicy, b); err != nil {
			t.Errorf("putting policy: %v", err)
		}
	}()

	e, w, err := Open(ctx, js, Options{}, WatchOptions{})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(w.Stop)
	waitFor(t, e, operatorInput(), true, 5*time.Second)
}

func TestOpenGivesUpWithContext(t *testing.T) {
	js := testkit.JetStream(t, testkit.NATSServer(t))
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()

	if _, _, err := Open(ctx, js, Options{}, WatchOptions{}); !errors.Is(err,
		context.DeadlineExceeded) {
		t.Errorf("got %v, want context.DeadlineExceeded", err)
	}
}
