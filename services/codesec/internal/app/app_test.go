package app

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/nodexsec/nodex/libs/authz"
	"github.com/nodexsec/nodex/libs/bundle"
	"github.com/nodexsec/nodex/libs/errs"
	"github.com/nodexsec/nodex/libs/events"
	"github.com/nodexsec/nodex/libs/identity"
	"github.com/nodexsec/nodex/libs/testkit"
	"github.com/nodexsec/nodex/services/codesec/internal/corpus"
	"github.com/nodexsec/nodex/services/codesec/internal/domain"
	"github.com/nodexsec/nodex/services/codesec/internal/scan"
)

// jetStreamSink stores events in the real NODEX_EVENTS stream as plain
// JSON. The envelope layer is tested with the bus; here the events only
// need to persist where a test can read them.
type jetStreamSink struct{ js jetstream.JetStream }

func (s jetStreamSink) Publish(ctx context.Context, subject, _ string, body any) error {
	data, err := json.Marshal(body)
	if err != nil {
		return err
	}
	_, err = s.js.Publish(ctx, subject, data)

	return err
}

type fixture struct {
	svc       *Service
	js        jetstream.JetStream
	store     *bundle.Store
	revoked   *bundle.Revocations
	setup     *identity.Setup
	runnerKey bundle.StaticRecipient
}

var (
	agent    = Caller{ID: identity.DemoAgentID, Kind: authz.KindAgent, Roles: []string{"agent"}}
	operator = Caller{ID: identity.OperatorID, Kind: authz.KindOperator, Roles: []string{"operator"}}
	runner   = Caller{ID: "sandbox", Kind: authz.KindService, Roles: []string{"service:sandbox"}}
)

func newFixture(t testing.TB, decider Decider) *fixture {
	t.Helper()

	ctx := context.Background()
	js := testkit.JetStream(t, testkit.NATSServer(t))
	if _, err := events.EnsureStream(ctx, js, events.StreamOptions{}); err != nil {
		t.Fatal(err)
	}
	store, err := bundle.OpenStore(ctx, js, 0)
	if err != nil {
		t.Fatal(err)
	}
	revocations, err := bundle.OpenRevocations(ctx, js, 0)
	if err != nil {
		t.Fatal(err)
	}
	scanner, err := scan.NewDefault()
	if err != nil {
		t.Fatal(err)
	}
	setup, err := identity.Bootstrap(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if decider == nil {
		decider = shippedEngine(t)
	}
	pub := events.NewPublisher(jetStreamSink{js}, "codesec", events.PublisherOptions{})
	t.Cleanup(func() { _ = pub.Close(context.Background()) })

	recipient := bundle.StaticRecipient{Key: setup.Creds["sandbox"].CurrentHPKEKey().Key.PublicKey()}
	svc := New(Deps{
		Scanner: scanner, Decider: decider, Audit: pub, Store: store, Revocations: revocations,
		Signer: bundle.SignerFromCreds(setup.Creds["codesec"]), Recipient: recipient,
		Log: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})

	return &fixture{svc: svc, js: js, store: store, revoked: revocations, setup: setup,
		runnerKey: recipient}
}

func shippedEngine(t testing.TB) *authz.Engine {
	t.Helper()

	set, err := corpus.ShippedPolicy()
	if err != nil {
		t.Fatal(err)
	}
	engine := authz.New(authz.Options{Timeout: 5 * time.Second})
	if err := engine.Load(context.Background(), set); err != nil {
		t.Fatal(err)
	}

	return engine
}

func submission(code string) *domain.Submission {
	return &domain.Submission{Language: domain.LangPython, Entrypoint: "main.py",
		Files: []domain.SourceFile{{Name: "main.py", Content: code}}, Stdin: "in\n",
		Args: []string{"-v"}, Modules: []string{"json"}}
}

// verifyAndOpen checks a stored bundle the way the sandbox-runner does.
func (f *fixture) verifyAndOpen(t *testing.T, id string) (*bundle.Verified, *bundle.Contents) {
	t.Helper()

	b, err := f.store.Get(context.Background(), id)
	if err != nil {
		t.Fatalf("loading bundle %s: %v", id, err)
	}
	pub := f.setup.Creds["codesec"].CurrentSigningKey()
	v, err := bundle.Verify(context.Background(), b, bundle.VerifyOptions{
		Signer: "codesec", Revocations: f.revoked,
		Keys: bundle.StaticKey{ID: "codesec", Version: pub.Version, Key: pub.Key.Public().(ed25519.PublicKey)},
	})
	if err != nil {
		t.Fatalf("verifying bundle %s: %v", id, err)
	}
	contents, err := bundle.Open(v, f.setup.Creds["sandbox"].CurrentHPKEKey().Key)
	if err != nil {
		t.Fatalf("opening bundle %s: %v", id, err)
	}

	return v, contents
}

func TestSubmitAcceptsAndSeals(t *testing.T) {
	t.Parallel()
	f := newFixture(t, nil)
	code := "import json\nprint(json.dumps([1, 2]))\n"

	res, err := f.svc.Submit(context.Background(), agent, submission(code), "")
	if err != nil {
		t.Fatalf("Submit: %v", err)
	}
	if res.Verdict != VerdictAllow || len(res.Findings) != 0 || res.DecisionID == "" {
		t.Errorf("result = %+v, want an allow with a decision id and no findings", res)
	}

	v, contents := f.verifyAndOpen(t, res.BundleID)
	if v.Manifest.Author != agent.ID {
		t.Errorf("manifest author = %q, want %q", v.Manifest.Author, agent.ID)
	}
	if v.Manifest.DecisionID != res.DecisionID {
		t.Errorf("manifest decision id = %q, want %q", v.Manifest.DecisionID, res.DecisionID)
	}
	if string(contents.Files[0].Data) != code || string(contents.Stdin) != "in\n" {
		t.Errorf("opened contents = %q / %q, want the submitted code and stdin",
			contents.Files[0].Data, contents.Stdin)
	}
}

func TestSubmitFlagsHighFindings(t *testing.T) {
	t.Parallel()
	f := newFixture(t, nil)

	res, err := f.svc.Submit(context.Background(), agent, submission("print(eval('1+1'))\n"), "")
	if err != nil {
		t.Fatalf("Submit: %v", err)
	}
	if res.Verdict != VerdictAllowWithFlags {
		t.Errorf("verdict = %q, want %q", res.Verdict, VerdictAllowWithFlags)
	}
	if len(res.Findings) != 1 || res.Findings[0].RuleID != "PY-EXEC-001" || res.Findings[0].Line != 1 {
		t.Errorf("findings = %+v, want PY-EXEC-001 on line 1", res.Findings)
	}
	v, _ := f.verifyAndOpen(t, res.BundleID)
	if len(v.Manifest.Findings) != 1 {
		t.Errorf("manifest findings = %+v, want the one finding", v.Manifest.Findings)
	}
}

func TestSubmitDeniedIsSecurityEvent(t *testing.T) {
	t.Parallel()
	f := newFixture(t, nil)
	code := "import os\n\nos.system('id')\n"

	_, err := f.svc.Submit(context.Background(), agent, submission(code), "trace-1")
	if !errors.Is(err, errs.CodeRefused) {
		t.Fatalf("Submit error = %v, want %v", err, errs.CodeRefused)
	}
	if desc := errs.From(err).Description; !strings.Contains(desc, "PY-PROC-001 (critical) at main.py:3") {
		t.Errorf("error description %q does not name the finding", desc)
	}

	ev := f.waitEvent(t, "codesec.submission_denied")
	if ev.Subject != agent.ID || ev.Status != events.StatusFailure || ev.TraceID != "trace-1" {
		t.Errorf("denied event = %+v, want subject %s, failure, trace-1", ev, agent.ID)
	}
	if !strings.Contains(ev.Metadata["rule_ids"], "PY-PROC-001") {
		t.Errorf("denied event rule_ids = %q, want PY-PROC-001", ev.Metadata["rule_ids"])
	}
	if ev := f.waitEvent(t, "codesec.finding"); ev.Severity != events.SeverityCritical {
		t.Errorf("finding event severity = %q, want critical", ev.Severity)
	}
}

// waitEvent reads NODEX_EVENTS until an event of type typ arrives.
func (f *fixture) waitEvent(t *testing.T, typ string) events.SecurityEvent {
	t.Helper()

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cons, err := f.js.OrderedConsumer(ctx, events.StreamName, jetstream.OrderedConsumerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	for {
		msg, err := cons.Next(jetstream.FetchMaxWait(10 * time.Second))
		if err != nil {
			t.Fatalf("no %s event: %v", typ, err)
		}
		var ev events.SecurityEvent
		if err := json.Unmarshal(msg.Data(), &ev); err == nil && ev.Type == typ {
			return ev
		}
	}
}

func TestSubmitFailsClosedWithoutPolicy(t *testing.T) {
	t.Parallel()
	f := newFixture(t, authz.New(authz.Options{}))

	_, err := f.svc.Submit(context.Background(), agent, submission("print(1)\n"), "")
	if !errors.Is(err, errs.Unavailable) {
		t.Errorf("Submit with no policy loaded: error = %v, want %v", err, errs.Unavailable)
	}
}

func TestRevokeAndGet(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f := newFixture(t, nil)
	res, err := f.svc.Submit(ctx, agent, submission("print(1)\n"), "")
	if err != nil {
		t.Fatal(err)
	}
	watcher, err := f.revoked.Watch(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer watcher.Stop()

	got, err := f.svc.Get(ctx, runner, GetRequest{BundleID: res.BundleID}, "")
	if err != nil {
		t.Fatalf("Get by the runner: %v", err)
	}
	if got.Revoked {
		t.Error("Get before revoke: revoked = true, want false")
	}
	if _, err := bundle.Parse(got.Bundle); err != nil {
		t.Errorf("parsing the bundle from Get: %v", err)
	}

	if _, err := f.svc.Revoke(ctx, agent, RevokeRequest{BundleID: res.BundleID}, ""); !errors.Is(err, errs.AccessDenied) {
		t.Errorf("Revoke by an agent: error = %v, want %v", err, errs.AccessDenied)
	}
	if _, err := f.svc.Revoke(ctx, operator, RevokeRequest{BundleID: res.BundleID, Reason: "test"}, ""); err != nil {
		t.Fatalf("Revoke by the operator: %v", err)
	}

	deadline := time.Now().Add(5 * time.Second)
	for revoked, _ := watcher.Revoked(ctx, res.BundleID); !revoked; revoked, _ = watcher.Revoked(ctx, res.BundleID) {
		if time.Now().After(deadline) {
			t.Fatal("revocation did not reach the watcher within 5s")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if got, err := f.svc.Get(ctx, runner, GetRequest{BundleID: res.BundleID}, ""); err != nil || !got.Revoked {
		t.Errorf("Get after revoke = %+v, %v, want revoked", got, err)
	}
	if ev := f.waitEvent(t, "codesec.bundle_revoked"); ev.Subject != operator.ID {
		t.Errorf("revocation event subject = %q, want %q", ev.Subject, operator.ID)
	}
}

func TestGetRejections(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f := newFixture(t, nil)

	tests := []struct {
		name   string
		caller Caller
		id     string
		want   error
	}{
		{"invalid id", runner, "../x", errs.InvalidRequest},
		{"unknown id", runner, "b-missing", errs.NotFound},
		{"agent may not read", agent, "b-missing", errs.AccessDenied},
	}
	for _, tt := range tests {
		if _, err := f.svc.Get(ctx, tt.caller, GetRequest{BundleID: tt.id}, ""); !errors.Is(err, tt.want) {
			t.Errorf("%s: error = %v, want %v", tt.name, err, tt.want)
		}
	}
}
