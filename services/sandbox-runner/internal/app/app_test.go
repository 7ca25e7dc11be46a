package app

import (
	"context"
	"crypto/ed25519"
	"crypto/hmac"
	"crypto/hpke"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/nodexsec/nodex/libs/authz"
	"github.com/nodexsec/nodex/libs/bundle"
	"github.com/nodexsec/nodex/libs/errs"
	"github.com/nodexsec/nodex/libs/events"
	"github.com/nodexsec/nodex/libs/testkit"
	"github.com/nodexsec/nodex/services/sandbox-runner/internal/adapters/receiptkv"
	"github.com/nodexsec/nodex/services/sandbox-runner/internal/executor"
	"github.com/nodexsec/nodex/services/sandbox-runner/internal/receipt"
	"github.com/nodexsec/nodex/services/sandbox-runner/internal/scan"
)

var initPath string

// testIDBase gives this test process its own 64 host ids, apart from other
// test processes that may run on this machine at the same time.
var testIDBase = 1<<21 + (os.Getpid()%8192)*64

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "nodex-app-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	_ = os.Chmod(dir, 0o755)
	initPath = filepath.Join(dir, "sandbox-init")
	cmd := exec.Command("go", "build", "-o", initPath, "../../cmd/sandbox-init")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "building sandbox-init: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// testPolicy allows agents to exec and operators to kill.
const testPolicy = `package nodex.authz

import rego.v1

default decision := {"allow": false, "reasons": ["not allowed"]}

decision := {"allow": true, "reasons": ["agent exec"]} if {
	input.subject.kind == "agent"
	input.action == "exec"
	input.resource.type == "sandbox"
}

decision := {"allow": true, "reasons": ["operator kill"]} if {
	input.subject.kind == "operator"
	input.action == "kill"
}
`

// captureSink records the events a real publisher persists.
type captureSink struct {
	mu     sync.Mutex
	events []events.SecurityEvent
}

func (c *captureSink) Publish(_ context.Context, _, _ string, body any) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.events = append(c.events, body.(events.SecurityEvent))
	return nil
}

func (c *captureSink) ofType(typ string) []events.SecurityEvent {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []events.SecurityEvent
	for _, e := range c.events {
		if e.Type == typ {
			out = append(out, e)
		}
	}
	return out
}

type fixture struct {
	svc       *Service
	store     *bundle.Store
	revoked   *bundle.Revocations
	sink      *captureSink
	pub       *events.Publisher
	receipts  *receiptkv.Store
	signer    bundle.Signer
	recipient hpke.PublicKey
	runnerPub ed25519.PublicKey
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	ctx := context.Background()
	js := testkit.JetStream(t, testkit.NATSServer(t))
	store, err := bundle.OpenStore(ctx, js, 0)
	if err != nil {
		t.Fatal(err)
	}
	revs, err := bundle.OpenRevocations(ctx, js, 0)
	if err != nil {
		t.Fatal(err)
	}
	watcher, err := revs.Watch(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(watcher.Stop)
	receipts, err := receiptkv.Open(ctx, js, 0)
	if err != nil {
		t.Fatal(err)
	}
	engine := authz.New(authz.Options{})
	if err := engine.Load(ctx, authz.PolicySet{Revision: "test",
		Modules: map[string]string{"authz.rego": testPolicy}}); err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	ex, err := executor.New(executor.Config{InitPath: initPath, Slots: 2, HostIDBase: testIDBase,
		Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ex.Close() })
	codesecPub, codesecKey, _ := ed25519.GenerateKey(nil)
	runnerPub, runnerKey, _ := ed25519.GenerateKey(nil)
	hpkeKey, err := bundle.GenerateRecipientKey()
	if err != nil {
		t.Fatal(err)
	}
	sink := &captureSink{}
	pub := events.NewPublisher(sink, "sandbox", events.PublisherOptions{
		OnLost: func(ev events.SecurityEvent, err error) { t.Errorf("event %s lost: %v", ev.Type, err) }})
	svc, err := New(Deps{
		Bundles: store, RecipientKeys: []hpke.PrivateKey{hpkeKey}, Decider: engine, Events: pub, Receipts: receipts,
		Runner: ex, SigningKey: runnerKey, SignerID: "service:sandbox", KeyVersion: 1, Log: log,
		Verify: bundle.VerifyOptions{Signer: "service:codesec", Revocations: watcher,
			Keys: bundle.StaticKey{ID: "service:codesec", Version: 1, Key: codesecPub}},
	})
	if err != nil {
		t.Fatal(err)
	}
	return &fixture{svc: svc, store: store, revoked: revs, sink: sink, pub: pub, receipts: receipts,
		signer:    bundle.Signer{ID: "service:codesec", KeyVersion: 1, Key: codesecKey},
		recipient: hpkeKey.PublicKey(), runnerPub: runnerPub}
}

// seal stores a python bundle and returns its id.
func (f *fixture) seal(t *testing.T, code string, created, expires time.Time,
	modules ...string) (string, *bundle.Bundle) {
	t.Helper()
	id := uuid.NewString()
	m := bundle.Manifest{ID: id, Language: "python", Entrypoint: "main.py", Author: "agent:alpha",
		Created: created, Expires: expires, Modules: modules}
	b, _, err := bundle.Seal(m, bundle.Contents{Files: []bundle.File{{Name: "main.py", Data: []byte(code)}}},
		f.signer, f.recipient)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.store.Put(context.Background(), id, b); err != nil {
		t.Fatal(err)
	}
	return id, b
}

func (f *fixture) sealNow(t *testing.T, code string, modules ...string) string {
	id, _ := f.seal(t, code, time.Now().Add(-time.Minute), time.Now().Add(time.Hour), modules...)
	return id
}

var agent = Caller{ID: "agent:alpha", Kind: "agent", Roles: []string{"agent"}, Status: "active"}

// flush waits until the publisher has handed every queued event to the sink.
func (f *fixture) flush(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := f.pub.Close(ctx); err != nil {
		t.Fatal(err)
	}
}

func TestExecRunsVerifiedBundle(t *testing.T) {
	f := newFixture(t)
	id := f.sealNow(t, "print('hello from the sandbox')")
	rep, err := f.svc.Exec(context.Background(), agent, ExecRequest{BundleID: id})
	if err != nil {
		t.Fatalf("Exec: %v", err)
	}
	if rep.Reason != executor.ReasonExited || rep.ExitCode != 0 || rep.Stdout != "hello from the sandbox\n" {
		t.Errorf("got reason %s exit %d stdout %q", rep.Reason, rep.ExitCode, rep.Stdout)
	}
	r, err := receipt.Verify(rep.Receipt, f.runnerPub)
	if err != nil {
		t.Fatalf("verifying receipt: %v", err)
	}
	if r.BundleID != id || r.Agent != agent.ID || r.StdoutSHA256 != receipt.Digest([]byte(rep.Stdout)) {
		t.Errorf("receipt %+v does not match the run", r)
	}
	stored, err := f.receipts.Get(context.Background(), rep.RunID)
	if err != nil {
		t.Fatalf("reading stored receipt: %v", err)
	}
	if _, err := receipt.Verify(stored, f.runnerPub); err != nil {
		t.Errorf("stored receipt does not verify: %v", err)
	}
}

func TestExecRejectsBadBundles(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	marker := "print('ran')"

	expiredID, _ := f.seal(t, marker, time.Now().Add(-2*time.Hour), time.Now().Add(-time.Hour))
	revokedID := f.sealNow(t, marker)
	if err := f.revoked.Revoke(ctx, bundle.Revocation{BundleID: revokedID, Reason: "test"}); err != nil {
		t.Fatal(err)
	}
	tamperedID, b := f.seal(t, marker, time.Now().Add(-time.Minute), time.Now().Add(time.Hour))
	b.Ciphertext[len(b.Ciphertext)-1] ^= 1
	if err := f.store.Put(ctx, tamperedID, b); err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond) // the revocation watcher catches up

	tests := []struct {
		name string
		id   string
		want *errs.Error
	}{
		{"expired", expiredID, errs.BundleExpired},
		{"revoked", revokedID, errs.BundleRevoked},
		{"tampered", tamperedID, errs.BundleInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rep, err := f.svc.Exec(ctx, agent, ExecRequest{BundleID: tt.id})
			if !errors.Is(err, tt.want) {
				t.Fatalf("got %v (reply %+v), want %s", err, rep, tt.want.Name)
			}
		})
	}
	f.flush(t)
	if n := len(f.sink.ofType("sandbox.exec")); n != 0 {
		t.Errorf("got %d sandbox.exec events, want 0: a rejected bundle must never start", n)
	}
	if n := len(f.sink.ofType("sandbox.bundle_rejected")); n != 3 {
		t.Errorf("got %d bundle_rejected events, want 3", n)
	}
}

func TestExecRedactsSecretsAndReportsViolations(t *testing.T) {
	f := newFixture(t)
	key := "sk-ant-api03-" + strings.Repeat("FAKEfake0", 11)[:93] + "AA"
	id := f.sealNow(t, `
import socket
print("key: `+key+`")
try:
    socket.socket(socket.AF_INET, socket.SOCK_STREAM)
except OSError as e:
    print("socket", e.errno)
`, "socket")
	rep, err := f.svc.Exec(context.Background(), agent, ExecRequest{BundleID: id})
	if err != nil {
		t.Fatalf("Exec: %v", err)
	}
	if strings.Contains(rep.Stdout, key) || rep.Redactions != 1 {
		t.Errorf("got stdout %q with %d redactions, want the key redacted once", rep.Stdout, rep.Redactions)
	}
	f.flush(t)
	if n := len(f.sink.ofType("sandbox.secret_redacted")); n != 1 {
		t.Errorf("got %d secret_redacted events, want 1", n)
	}
	v := f.sink.ofType("sandbox.violation")
	if len(v) != 1 || v[0].Metadata["kind"] != "network" || v[0].Subject != agent.ID {
		t.Errorf("got violations %+v, want one network violation by %s", v, agent.ID)
	}
}

func TestExecRedactsEncodedKeys(t *testing.T) {
	f := newFixture(t)
	key := "sk-ant-api03-" + strings.Repeat("FAKEfake0", 11)[:93] + "AA"
	id := f.sealNow(t, `
key = "`+key+`"
print(key[::-1])
print(key.encode().hex())
`)
	rep, err := f.svc.Exec(context.Background(), agent, ExecRequest{BundleID: id})
	if err != nil {
		t.Fatalf("Exec: %v", err)
	}
	reversed := []byte(key)
	slices.Reverse(reversed)
	for _, form := range []string{string(reversed), hex.EncodeToString([]byte(key))} {
		if strings.Contains(rep.Stdout, form) {
			t.Errorf("stdout %q holds the key in an encoded form", rep.Stdout)
		}
	}
	if rep.Redactions != 2 {
		t.Errorf("got %d redactions, want 2 (reversed and hex); stdout %q", rep.Redactions, rep.Stdout)
	}
}

func TestKillByAgent(t *testing.T) {
	f := newFixture(t)
	id := f.sealNow(t, "import time\ntime.sleep(30)", "time")
	done := make(chan *ExecReply, 1)
	go func() {
		rep, _ := f.svc.Exec(context.Background(), agent, ExecRequest{BundleID: id})
		done <- rep
	}()
	operator := Caller{ID: "operator:root", Kind: "operator", Roles: []string{"operator"}, Status: "active"}
	deadline := time.Now().Add(5 * time.Second)
	for {
		rep, err := f.svc.Kill(context.Background(), operator, KillRequest{AgentID: agent.ID})
		if err != nil {
			t.Fatalf("Kill: %v", err)
		}
		if rep.Killed == 1 || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	select {
	case rep := <-done:
		if rep == nil || rep.Reason != executor.ReasonKilled {
			t.Errorf("got %+v, want reason killed", rep)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the run did not end after the kill")
	}
	if _, err := f.svc.Kill(context.Background(), agent, KillRequest{AgentID: agent.ID}); !errors.Is(err, errs.AccessDenied) {
		t.Errorf("agent kill: got %v, want access_denied", err)
	}
}

func TestExecDeniesUnlistedImport(t *testing.T) {
	f := newFixture(t)
	id := f.sealNow(t, "import json\nimport socket\nprint('imported')", "json")
	rep, err := f.svc.Exec(context.Background(), agent, ExecRequest{BundleID: id})
	if err != nil {
		t.Fatalf("Exec: %v", err)
	}
	if rep.ExitCode == 0 || strings.Contains(rep.Stdout, "imported") {
		t.Errorf("got exit %d stdout %q, want the socket import to fail", rep.ExitCode, rep.Stdout)
	}
	if strings.Contains(rep.Stderr, executor.DeniedImportPrefix) {
		t.Errorf("the guard's report line reached the caller: %q", rep.Stderr)
	}
	f.flush(t)
	v := f.sink.ofType("sandbox.violation")
	if len(v) != 1 || v[0].Metadata["kind"] != "import" || v[0].Metadata["module"] != "socket" {
		t.Errorf("got violations %+v, want one import violation for socket", v)
	}
}

func TestExecRedactsKeyvaultValues(t *testing.T) {
	f := newFixture(t)
	// A Mistral-style key has no prefix, so only its fingerprint finds it.
	value := "FAKEmistralFAKEmistralFAKE123456"
	hmacKey := []byte("0123456789abcdef0123456789abcdef")
	mac := hmac.New(sha256.New, hmacKey)
	mac.Write([]byte(value))
	fps := scan.NewFingerprints(hmacKey)
	fps.Put(scan.Fingerprint{Name: "mistral-main", Provider: "mistral", Version: 1,
		Length: len(value), HMAC: hex.EncodeToString(mac.Sum(nil))})
	f.svc.SetFingerprints(fps)

	id := f.sealNow(t, "import base64\nv = '"+value+"'\nprint(v)\nprint(base64.b64encode(v.encode()).decode())",
		"base64")
	rep, err := f.svc.Exec(context.Background(), agent, ExecRequest{BundleID: id})
	if err != nil {
		t.Fatalf("Exec: %v", err)
	}
	encoded := base64.StdEncoding.EncodeToString([]byte(value))
	if strings.Contains(rep.Stdout, value) || strings.Contains(rep.Stdout, encoded) {
		t.Errorf("stored value left in stdout %q", rep.Stdout)
	}
	f.flush(t)
	got := f.sink.ofType("sandbox.secret_redacted")
	if len(got) != 2 {
		t.Fatalf("got %d secret_redacted events, want 2 (plain and base64)", len(got))
	}
	for _, ev := range got {
		if ev.Metadata["key_name"] != "mistral-main" || ev.Subject != agent.ID {
			t.Errorf("got event %+v, want key mistral-main by %s", ev.Metadata, agent.ID)
		}
	}
}
