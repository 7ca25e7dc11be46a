package keyvault_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"go.opentelemetry.io/otel/trace"

	"github.com/nodexsec/nodex/libs/authz"
	"github.com/nodexsec/nodex/libs/bus"
	"github.com/nodexsec/nodex/libs/envelope/envtest"
	"github.com/nodexsec/nodex/libs/errs"
	"github.com/nodexsec/nodex/libs/events"
	"github.com/nodexsec/nodex/libs/testkit"
	"github.com/nodexsec/nodex/services/keyvault/api"
	"github.com/nodexsec/nodex/services/keyvault/internal/domain"
	"github.com/nodexsec/nodex/services/keyvault/keyvault"
)

type world struct {
	srv      *server.Server
	keyvault *bus.Client
	operator *bus.Client
	agent    *bus.Client
	kekFile  string
	// log and tracer, when set, receive the service's logs and spans.
	log    *slog.Logger
	tracer trace.Tracer
}

func newWorld(t testing.TB, srv *server.Server) *world {
	t.Helper()
	ctx := context.Background()
	js := testkit.JetStream(t, srv)
	ws, err := bus.NewWrapStore(ctx, js, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := events.EnsureStream(ctx, js, events.StreamOptions{}); err != nil {
		t.Fatal(err)
	}
	w := envtest.NewWorld(ws)
	kv := w.AddParty(t, "keyvault", "service", "service:keyvault")
	w.AddParty(t, "monitor", "service", events.AudienceRole)
	op := w.AddParty(t, "operator-1", "operator", "operator")
	agent := w.AddParty(t, "agent-1", "agent", "key-reader:openai")

	kekFile := filepath.Join(t.TempDir(), "keyvault.kek")
	if err := keyvault.GenerateKEKFile(kekFile); err != nil {
		t.Fatal(err)
	}

	return &world{srv: srv, keyvault: client(t, srv, kv), operator: client(t, srv, op),
		agent: client(t, srv, agent), kekFile: kekFile}
}

func client(t testing.TB, srv *server.Server, p *envtest.Party) *bus.Client {
	t.Helper()
	c, err := bus.New(bus.Config{Conn: testkit.Connect(t, srv), Codec: p.Codec(t, nil),
		RequestsPerSecond: 1e6, RequestBurst: 1e6})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Drain(context.Background()) })

	return c
}

// engine loads the policy set that the policy service ships, so these
// tests follow its real key rules: operators may do anything with keys, and
// key-reader:<provider> may retrieve that provider's keys.
func engine(t testing.TB) *authz.Engine {
	t.Helper()
	const dir = "../../policy/policies/"
	src, err := os.ReadFile(dir + "authz.rego")
	if err != nil {
		t.Fatalf("reading the shipped policy: %v", err)
	}
	raw, err := os.ReadFile(dir + "data.json")
	if err != nil {
		t.Fatalf("reading the shipped role data: %v", err)
	}
	var data map[string]any
	if err := json.Unmarshal(raw, &data); err != nil {
		t.Fatal(err)
	}
	e := authz.New(authz.Options{})
	err = e.Load(context.Background(), authz.PolicySet{Revision: "shipped",
		Modules: map[string]string{"authz.rego": string(src)}, Data: data})
	if err != nil {
		t.Fatalf("loading the shipped policy: %v", err)
	}

	return e
}

// start runs the service until the test ends and waits for its handlers.
func (w *world) start(t testing.TB, cfg keyvault.Config) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	pub := events.NewPublisher(w.keyvault, "keyvault", events.PublisherOptions{})
	errc := make(chan error, 1)
	if cfg.KEKFile == "" {
		cfg.KEKFile = w.kekFile
	}
	log := w.log
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	go func() {
		errc <- keyvault.Run(ctx, keyvault.Deps{Config: cfg, Client: w.keyvault,
			Decider: engine(t), Audit: pub, Log: log, Tracer: w.tracer})
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-errc; err != nil {
			t.Errorf("Run: %v", err)
		}
		_ = pub.Close(context.Background())
	})

	// Wait until the handlers respond.
	deadline := time.Now().Add(10 * time.Second)
	for {
		var reply api.ListReply
		// A request sent before the handlers subscribe gets no reply and
		// waits out its deadline, so each attempt is short.
		attempt, cancelAttempt := context.WithTimeout(context.Background(), 200*time.Millisecond)
		err := w.operator.Request(attempt, api.SubjectList, api.Role, api.ListRequest{}, &reply)
		cancelAttempt()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("keyvault not answering: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func fake(t testing.TB, provider string) api.Secret {
	t.Helper()
	p, err := domain.LookupProvider(provider)
	if err != nil {
		t.Fatal(err)
	}

	return api.NewSecret(p.Formats[0].Fake())
}

func TestRunServesOverBus(t *testing.T) {
	ctx := context.Background()
	w := newWorld(t, testkit.NATSServer(t))
	w.start(t, keyvault.Config{})
	value := fake(t, "openai")

	var stored api.StoreReply
	err := w.operator.Request(ctx, api.SubjectStore, api.Role, api.StoreRequest{
		Provider: "openai", Name: "openai-prod", Value: value}, &stored)
	if err != nil {
		t.Fatalf("store: %v", err)
	}
	var got api.RetrieveReply
	err = w.agent.Request(ctx, api.SubjectRetrieve, api.Role,
		api.RetrieveRequest{Name: "openai-prod", Purpose: "test"}, &got)
	if err != nil {
		t.Fatalf("retrieve: %v", err)
	}
	if string(got.Value) != string(value.Reveal()) || got.Version != 1 {
		t.Errorf("retrieved version %d, value equal %v; want version 1 and the stored value",
			got.Version, string(got.Value) == string(value.Reveal()))
	}

	// A key labelled env=prod needs a role allowed on prod, which a plain
	// key-reader role is not in the shipped policy.
	err = w.operator.Request(ctx, api.SubjectStore, api.Role, api.StoreRequest{
		Provider: "openai", Name: "openai-live", Value: fake(t, "openai"),
		Labels: map[string]string{"env": "prod"}}, &stored)
	if err != nil {
		t.Fatalf("store prod key: %v", err)
	}
	err = w.agent.Request(ctx, api.SubjectRetrieve, api.Role,
		api.RetrieveRequest{Name: "openai-live"}, &got)
	if !errors.Is(err, errs.AccessDenied) {
		t.Errorf("agent retrieve of a prod key: error = %v, want access_denied", err)
	}

	// The agent may not store, nor read another provider's key.
	err = w.agent.Request(ctx, api.SubjectStore, api.Role, api.StoreRequest{
		Provider: "groq", Name: "g", Value: fake(t, "groq")}, &stored)
	if !errors.Is(err, errs.AccessDenied) {
		t.Errorf("agent store: error = %v, want access_denied", err)
	}

	// A malformed key comes back as a coded error without the value.
	bad := api.NewSecret([]byte("sk-proj-not-a-real-key-shape-at-all"))
	err = w.operator.Request(ctx, api.SubjectStore, api.Role, api.StoreRequest{
		Provider: "openai", Name: "bad", Value: bad}, &stored)
	if !errors.Is(err, errs.KeyFormatInvalid) {
		t.Errorf("malformed store: error = %v, want key_format_invalid", err)
	}
	if err != nil && strings.Contains(err.Error(), "not-a-real-key") {
		t.Errorf("coded error echoes the value: %v", err)
	}
}

func TestRunHardensProcess(t *testing.T) {
	w := newWorld(t, testkit.NATSServer(t))
	w.start(t, keyvault.Config{})
	d, err := keyvault.Dumpable()
	if err != nil {
		t.Fatal(err)
	}
	if d {
		t.Error("process is still dumpable after Run started")
	}
}

func TestRunWithoutKEKFails(t *testing.T) {
	w := newWorld(t, testkit.NATSServer(t))
	missing := filepath.Join(t.TempDir(), "none.kek")
	err := keyvault.Run(context.Background(), keyvault.Deps{
		Config: keyvault.Config{KEKFile: missing}, Client: w.keyvault, Decider: engine(t),
		Audit: events.NewPublisher(w.keyvault, "keyvault", events.PublisherOptions{}),
		Log:   slog.New(slog.NewTextHandler(io.Discard, nil))})
	if !errors.Is(err, keyvault.ErrNoKEK) {
		t.Fatalf("Run without KEK: error = %v, want ErrNoKEK", err)
	}
	if !strings.Contains(err.Error(), missing) {
		t.Errorf("error %q does not name the missing file", err)
	}
}
