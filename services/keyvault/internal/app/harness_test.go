package app_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/nodexsec/nodex/libs/authz"
	"github.com/nodexsec/nodex/libs/events"
	"github.com/nodexsec/nodex/libs/testkit"
	"github.com/nodexsec/nodex/services/keyvault/internal/adapters/kvstore"
	"github.com/nodexsec/nodex/services/keyvault/internal/app"
	"github.com/nodexsec/nodex/services/keyvault/internal/domain"
	"github.com/nodexsec/nodex/services/keyvault/internal/kek"
)

var (
	operator = app.Caller{ID: "operator-1", Kind: "operator", Roles: []string{"operator"},
		Status: "active"}
	openAIReader = app.Caller{ID: "agent-openai", Kind: "agent",
		Roles: []string{"key-reader:openai"}, Status: "active"}
	groqReader = app.Caller{ID: "agent-groq", Kind: "agent",
		Roles: []string{"key-reader:groq"}, Status: "active"}
)

// jsSink stores event bodies on JetStream as plain JSON. The service's
// production sink is libs/bus, which encrypts; this test needs the stream
// behaviour (ack, failure when the stream is gone), not the encryption.
type jsSink struct{ js jetstream.JetStream }

func (s jsSink) Publish(ctx context.Context, subject, _ string, body any) error {
	data, err := json.Marshal(body)
	if err != nil {
		return err
	}
	_, err = s.js.Publish(ctx, subject, data)

	return err
}

// fakeClock is a settable clock for grace periods.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()

	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()

	c.now = c.now.Add(d)
}

type harness struct {
	svc    *app.Service
	srv    *server.Server
	js     jetstream.JetStream
	store  *kvstore.Store
	ring   *kek.Keyring
	clock  *fakeClock
	logs   *syncBuffer
	pub    *events.Publisher
	kekDir string
}

type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()

	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()

	return b.buf.String()
}

type harnessOptions struct {
	dataDir string // JetStream store; empty means a new temporary one
	kekDir  string // keyring directory; empty means a new one
	limits  app.Limits
}

func newHarness(t *testing.T, o harnessOptions) *harness {
	t.Helper()
	ctx := context.Background()
	if o.dataDir == "" {
		o.dataDir = t.TempDir()
	}
	if o.kekDir == "" {
		o.kekDir = t.TempDir()
		if err := kek.GenerateFile(filepath.Join(o.kekDir, "kek")); err != nil {
			t.Fatal(err)
		}
	}
	srv := testkit.NATSServerAt(t, o.dataDir)
	js := testkit.JetStream(t, srv)
	if _, err := events.EnsureStream(ctx, js, events.StreamOptions{}); err != nil {
		t.Fatal(err)
	}
	store, err := kvstore.Open(ctx, js, kvstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	ring, err := kek.LoadFile(filepath.Join(o.kekDir, "kek"))
	if err != nil {
		t.Fatal(err)
	}

	h := &harness{srv: srv, js: js, store: store, ring: ring, logs: &syncBuffer{},
		clock: &fakeClock{now: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)}, kekDir: o.kekDir}
	h.pub = events.NewPublisher(jsSink{js}, "keyvault", events.PublisherOptions{})
	t.Cleanup(func() { _ = h.pub.Close(context.Background()) })
	log := slog.New(slog.NewJSONHandler(h.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	h.svc = app.New(app.Deps{Store: store, KEK: ring, Decider: newEngine(t), Audit: h.pub,
		Log: log, Now: h.clock.Now, Grace: time.Hour, Limits: o.limits})

	return h
}

func newEngine(t *testing.T) *authz.Engine {
	t.Helper()
	src, err := os.ReadFile("testdata/policy.rego")
	if err != nil {
		t.Fatal(err)
	}
	e := authz.New(authz.Options{})
	set := authz.PolicySet{Revision: "test", Modules: map[string]string{"policy.rego": string(src)}}
	if err := e.Load(context.Background(), set); err != nil {
		t.Fatalf("loading test policy: %v", err)
	}

	return e
}

// streamEvents returns every event stored on NODEX_EVENTS.
func (h *harness) streamEvents(t *testing.T) []events.SecurityEvent {
	t.Helper()

	return readAll[events.SecurityEvent](t, h.js, events.StreamName)
}

// rawStream returns the bytes of every message in a stream.
func rawStream(t *testing.T, js jetstream.JetStream, stream string) [][]byte {
	t.Helper()
	ctx := context.Background()
	s, err := js.Stream(ctx, stream)
	if err != nil {
		t.Fatalf("opening stream %s: %v", stream, err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var out [][]byte
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq && info.State.Msgs > 0; seq++ {
		m, err := s.GetMsg(ctx, seq)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			continue
		}
		if err != nil {
			t.Fatalf("reading %s seq %d: %v", stream, seq, err)
		}
		out = append(out, m.Data)
	}

	return out
}

func readAll[T any](t *testing.T, js jetstream.JetStream, stream string) []T {
	t.Helper()
	var out []T
	for _, data := range rawStream(t, js, stream) {
		var v T
		if err := json.Unmarshal(data, &v); err != nil {
			t.Fatalf("decoding message of %s: %v", stream, err)
		}
		out = append(out, v)
	}

	return out
}

func fakeKey(t *testing.T, provider string) domain.Secret {
	t.Helper()
	p, err := domain.LookupProvider(provider)
	if err != nil {
		t.Fatal(err)
	}

	return domain.NewSecret(p.Formats[0].Fake())
}

// findEvent returns the last event of the given type and status.
func findEvent(evs []events.SecurityEvent, typ, status string) (events.SecurityEvent, bool) {
	for i := len(evs) - 1; i >= 0; i-- {
		if evs[i].Type == typ && evs[i].Status == status {
			return evs[i], true
		}
	}

	return events.SecurityEvent{}, false
}
