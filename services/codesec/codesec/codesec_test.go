package codesec_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/nodexsec/nodex/libs/authz"
	"github.com/nodexsec/nodex/libs/bundle"
	"github.com/nodexsec/nodex/libs/bus"
	"github.com/nodexsec/nodex/libs/envelope"
	"github.com/nodexsec/nodex/libs/errs"
	"github.com/nodexsec/nodex/libs/events"
	"github.com/nodexsec/nodex/libs/identity"
	"github.com/nodexsec/nodex/libs/testkit"
	"github.com/nodexsec/nodex/services/codesec/codesec"
	"github.com/nodexsec/nodex/services/codesec/internal/app"
	"github.com/nodexsec/nodex/services/codesec/internal/corpus"
	"github.com/nodexsec/nodex/services/codesec/internal/domain"
)

// stack is codesec on a real embedded server with the real identity
// registry, envelopes, shipped policy and events stream.
type stack struct {
	t     *testing.T
	srv   *server.Server
	js    jetstream.JetStream
	setup *identity.Setup
	view  *identity.View
	admin *identity.Admin
	wraps *bus.WrapStore
}

func newStack(t *testing.T) *stack {
	t.Helper()

	ctx := context.Background()
	s := &stack{t: t, srv: testkit.NATSServer(t)}
	s.js = testkit.JetStream(t, s.srv)
	var err error
	if s.setup, err = identity.Bootstrap(t.TempDir()); err != nil {
		t.Fatal(err)
	}
	kv, err := identity.EnsureBucket(ctx, s.js)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.setup.Publish(ctx, kv); err != nil {
		t.Fatal(err)
	}
	s.admin = identity.NewAdmin(kv, s.setup.Root)
	hbCtx, cancel := context.WithCancel(ctx)
	t.Cleanup(cancel)
	go identity.NewAuthorityWriter(kv, s.setup.Authority).RunHeartbeat(hbCtx, time.Second, nil)
	if s.view, err = identity.Watch(ctx, kv, s.setup.Root.Public(), identity.ViewOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.view.Close)
	s.startEpoch(codesec.Role, "codesec")
	s.startEpoch(events.AudienceRole, "codesec")
	if s.wraps, err = bus.NewWrapStore(ctx, s.js, 0); err != nil {
		t.Fatal(err)
	}
	if _, err := events.EnsureStream(ctx, s.js, events.StreamOptions{}); err != nil {
		t.Fatal(err)
	}

	return s
}

func (s *stack) startEpoch(role string, members ...string) {
	s.t.Helper()

	ctx := context.Background()
	var ids []*identity.Identity
	for _, m := range members {
		ident, err := s.admin.Get(ctx, m)
		if err != nil {
			s.t.Fatal(err)
		}
		ids = append(ids, ident)
	}
	if _, err := s.admin.StartRoleEpoch(ctx, role, s.setup.Creds[identity.OperatorID], ids); err != nil {
		s.t.Fatalf("starting epoch of %s: %v", role, err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for epoch, err := s.view.Role(role); err != nil || epoch == nil; epoch, err = s.view.Role(role) {
		if time.Now().After(deadline) {
			s.t.Fatalf("role %s not visible in the registry view", role)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func (s *stack) client(id string) *bus.Client {
	s.t.Helper()

	codec, err := envelope.New(envelope.Config{
		Keys:      &identity.Keyring{Creds: s.setup.Creds[id], View: s.view},
		Directory: &identity.Directory{View: s.view}, Wraps: s.wraps,
	})
	if err != nil {
		s.t.Fatal(err)
	}
	c, err := bus.New(bus.Config{Conn: testkit.Connect(s.t, s.srv), Codec: codec,
		RequestTimeout: 5 * time.Second})
	if err != nil {
		s.t.Fatal(err)
	}
	s.t.Cleanup(func() { _ = c.Drain(context.Background()) })

	return c
}

// run starts codesec and stops it when the test ends.
func (s *stack) run() {
	s.t.Helper()

	set, err := corpus.ShippedPolicy()
	if err != nil {
		s.t.Fatal(err)
	}
	engine := authz.New(authz.Options{Timeout: 5 * time.Second})
	if err := engine.Load(context.Background(), set); err != nil {
		s.t.Fatal(err)
	}
	c := s.client("codesec")
	pub := events.NewPublisher(c, "codesec", events.PublisherOptions{})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- codesec.Run(ctx, codesec.Deps{Client: c, Decider: engine, Audit: pub,
			Creds: s.setup.Creds["codesec"], View: s.view,
			Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	}()
	s.t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			s.t.Errorf("Run: %v", err)
		}
	})
	s.waitReady()
}

// waitReady retries a get of an absent bundle until codesec replies.
func (s *stack) waitReady() {
	s.t.Helper()

	sandbox := s.client("sandbox")
	deadline := time.Now().Add(10 * time.Second)
	for {
		var got app.GetResult
		err := sandbox.Request(context.Background(), codesec.SubjectGet, codesec.Role,
			app.GetRequest{BundleID: "b-ready"}, &got)
		if errors.Is(err, errs.NotFound) {
			return
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("codesec not answering after 10s: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestRunServesSubjects(t *testing.T) {
	s := newStack(t)
	s.run()
	ctx := context.Background()
	agent := s.client(identity.DemoAgentID)
	sandbox := s.client("sandbox")
	operator := s.client(identity.OperatorID)

	sub := domain.Submission{Language: "python", Entrypoint: "main.py",
		Files: []domain.SourceFile{{Name: "main.py", Content: "print(sum([1, 2]))\n"}}}
	var res app.SubmitResult
	if err := agent.Request(ctx, codesec.SubjectSubmit, codesec.Role, sub, &res); err != nil {
		t.Fatalf("submit: %v", err)
	}
	if res.Verdict != app.VerdictAllow {
		t.Errorf("verdict = %q, want allow", res.Verdict)
	}

	var got app.GetResult
	if err := sandbox.Request(ctx, codesec.SubjectGet, codesec.Role,
		app.GetRequest{BundleID: res.BundleID}, &got); err != nil {
		t.Fatalf("get by the sandbox: %v", err)
	}
	b, err := bundle.Parse(got.Bundle)
	if err != nil {
		t.Fatal(err)
	}
	list, err := bundle.OpenRevocations(ctx, s.js, 0)
	if err != nil {
		t.Fatal(err)
	}
	v, err := bundle.Verify(ctx, b, bundle.VerifyOptions{Signer: "codesec",
		Keys: bundle.RegistryKeys{View: s.view}, Revocations: list})
	if err != nil {
		t.Fatalf("verifying the bundle from get: %v", err)
	}
	contents, err := bundle.Open(v, s.setup.Creds["sandbox"].CurrentHPKEKey().Key)
	if err != nil || string(contents.Files[0].Data) != sub.Files[0].Content {
		t.Fatalf("opening the bundle: %v", err)
	}

	var rev app.RevokeResult
	if err := operator.Request(ctx, codesec.SubjectRevoke, codesec.Role,
		app.RevokeRequest{BundleID: res.BundleID, Reason: "test"}, &rev); err != nil || !rev.Revoked {
		t.Fatalf("revoke by the operator = %+v, %v", rev, err)
	}
	if _, err := bundle.Verify(ctx, b, bundle.VerifyOptions{Signer: "codesec",
		Keys: bundle.RegistryKeys{View: s.view}, Revocations: list}); !errors.Is(err, bundle.ErrRevoked) {
		t.Errorf("Verify after revoke: error = %v, want %v", err, bundle.ErrRevoked)
	}
}

func TestRunRejectsBadSubmissions(t *testing.T) {
	s := newStack(t)
	s.run()
	ctx := context.Background()
	agent := s.client(identity.DemoAgentID)

	tests := []struct {
		name    string
		sub     domain.Submission
		want    error
		mention string
	}{
		{"unsupported language", domain.Submission{Language: "ruby", Entrypoint: "a.rb",
			Files: []domain.SourceFile{{Name: "a.rb", Content: "x"}}}, errs.UnsupportedLanguage, `"ruby"`},
		{"path traversal", domain.Submission{Language: "python", Entrypoint: "../a.py",
			Files: []domain.SourceFile{{Name: "../a.py", Content: "x"}}}, errs.InvalidRequest, `"../a.py"`},
		{"critical finding", domain.Submission{Language: "python", Entrypoint: "a.py",
			Files: []domain.SourceFile{{Name: "a.py", Content: "import os\nos.system('id')\n"}}},
			errs.CodeRefused, "PY-PROC-001"},
		{"ctypes imported by a computed name", domain.Submission{Language: "python",
			Entrypoint: "a.py", Files: []domain.SourceFile{{Name: "a.py",
				Content: "n = 'ct'\nn += 'ypes'\nm = __import__(n)\nm.CDLL(None)\n"}}},
			errs.CodeRefused, "PY-IMPORT-002"},
	}
	for _, tt := range tests {
		var res app.SubmitResult
		err := agent.Request(ctx, codesec.SubjectSubmit, codesec.Role, tt.sub, &res)
		if !errors.Is(err, tt.want) {
			t.Errorf("%s: error = %v, want %v", tt.name, err, tt.want)
			continue
		}
		if desc := errs.From(err).Description; !strings.Contains(desc, tt.mention) {
			t.Errorf("%s: description %q does not mention %s", tt.name, desc, tt.mention)
		}
	}
}
