package monitor

import (
	"context"
	"crypto/ed25519"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/nodexsec/nodex/libs/bus"
	"github.com/nodexsec/nodex/libs/envelope"
	"github.com/nodexsec/nodex/libs/envelope/envtest"
	"github.com/nodexsec/nodex/libs/errs"
	"github.com/nodexsec/nodex/libs/events"
	"github.com/nodexsec/nodex/libs/testkit"
)

// secureWorld is a registry with the parties of a secure monitor test: the
// keyvault service that emits events, the monitor and an operator, the last
// two in the audit role that events and threats are sealed to.
type secureWorld struct {
	world    *envtest.World
	keyvault *envtest.Party
	monitor  *envtest.Party
	operator *envtest.Party
}

func newSecureWorld(t testing.TB) *secureWorld {
	t.Helper()

	w := envtest.NewWorld(nil)
	return &secureWorld{
		world:    w,
		keyvault: w.AddParty(t, "keyvault", "service", "service:keyvault"),
		monitor:  w.AddParty(t, "monitor", "service", "service:monitor", events.AudienceRole),
		operator: w.AddParty(t, "operator-1", "operator", "operator", events.AudienceRole),
	}
}

func busClient(t testing.TB, srv *server.Server, codec *envelope.Codec) *bus.Client {
	t.Helper()

	c, err := bus.New(bus.Config{Conn: testkit.Connect(t, srv), Codec: codec})
	if err != nil {
		t.Fatalf("creating bus client: %v", err)
	}

	return c
}

// startSecure runs the monitor with its bus client until the test ends.
func startSecure(t *testing.T, srv *server.Server, mon *bus.Client) {
	t.Helper()

	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan string, 1)
	done := make(chan error, 1)
	go func() {
		done <- Run(ctx, Config{MetricsAddr: "off"}, Deps{
			Log: slog.New(slog.NewTextHandler(t.Output(), nil)), Bus: mon,
			Ready: func(addr string) { ready <- addr },
		})
	}()
	select {
	case <-ready:
	case err := <-done:
		cancel()
		t.Fatalf("Run returned before ready: %v", err)
	case <-time.After(10 * time.Second):
		cancel()
		t.Fatal("monitor not ready after 10s")
	}
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
}

func TestSecureEventsRaiseThreat(t *testing.T) {
	srv := testkit.NATSServer(t)
	sw := newSecureWorld(t)
	startSecure(t, srv, busClient(t, srv, sw.monitor.Codec(t, nil)))

	kv := events.NewPublisher(busClient(t, srv, sw.keyvault.Codec(t, nil)), "keyvault",
		events.PublisherOptions{})
	t.Cleanup(func() { _ = kv.Close(context.Background()) })
	for range 5 {
		if err := kv.PublishSync(context.Background(), denial("agent-1")); err != nil {
			t.Fatalf("publishing event: %v", err)
		}
	}

	reader := Reader{JS: testkit.JetStream(t, srv), Codec: sw.operator.Codec(t, nil)}
	got := waitSecureThreats(t, reader, func(ts []Threat) bool { return len(ts) == 1 })
	if got[0].Identity != "agent-1" {
		t.Errorf("identity: got %q, want agent-1", got[0].Identity)
	}
	if got[0].Type != "UNAUTHORIZED_ACCESS" {
		t.Errorf("type: got %q, want UNAUTHORIZED_ACCESS", got[0].Type)
	}

	tail, err := reader.TailEvents(context.Background(), EventFilter{Identity: "agent-1"})
	if err != nil {
		t.Fatalf("TailEvents: %v", err)
	}
	if len(tail) != 5 {
		t.Errorf("TailEvents: got %d sealed events, want 5", len(tail))
	}
}

func TestSecureForgedEventNotAttributed(t *testing.T) {
	srv := testkit.NATSServer(t)
	sw := newSecureWorld(t)
	startSecure(t, srv, busClient(t, srv, sw.monitor.Codec(t, nil)))

	// The forger signs as keyvault with a key of its own to blame policy.
	// It seals to an audit role of its own registry.
	other := envtest.NewWorld(nil)
	other.AddParty(t, "keyvault", "service", "service:keyvault")
	other.AddParty(t, "monitor", "service", events.AudienceRole)
	keys := envelope.NewStaticKeys("keyvault", 1, ed25519.NewKeyFromSeed(envtest.Seed("forger")))
	forger, err := envelope.New(envelope.Config{Keys: keys, Directory: other.Dir,
		Wraps: other.Wraps})
	if err != nil {
		t.Fatalf("creating forger codec: %v", err)
	}
	fake := events.NewPublisher(busClient(t, srv, forger), "keyvault",
		events.PublisherOptions{})
	t.Cleanup(func() { _ = fake.Close(context.Background()) })
	if err := fake.PublishSync(context.Background(), denial("service:policy")); err != nil {
		t.Fatalf("publishing forged event: %v", err)
	}

	reader := Reader{JS: testkit.JetStream(t, srv), Codec: sw.operator.Codec(t, nil)}
	got := waitSecureThreats(t, reader, func(ts []Threat) bool { return len(ts) == 1 })
	th := got[0]
	if th.Type != "SYSTEM_COMPROMISE" || th.RuleID != "event-forged" {
		t.Errorf("threat: got %s from %s, want SYSTEM_COMPROMISE from event-forged",
			th.Type, th.RuleID)
	}
	if th.Identity != "" {
		t.Errorf("identity: got %q, want none", th.Identity)
	}
	if strings.Contains(th.Group+th.Origin, "policy") {
		t.Errorf("threat names the framed identity: group %q origin %q", th.Group, th.Origin)
	}
	if th.Origin != "connection:keyvault" {
		t.Errorf("origin: got %q, want connection:keyvault, the NATS user of the subject",
			th.Origin)
	}
}

func TestSecureUnopenableEventRejectedAfterRetries(t *testing.T) {
	srv := testkit.NATSServer(t)
	sw := newSecureWorld(t)
	startSecure(t, srv, busClient(t, srv, sw.monitor.Codec(t, nil)))

	// keyvault signs correctly but stores its wrap where the monitor never
	// looks, so the event can never be decrypted.
	lost := sw.keyvault.Codec(t, func(c *envelope.Config) { c.Wraps = envelope.NewMemoryWraps() })
	kv := events.NewPublisher(busClient(t, srv, lost), "keyvault", events.PublisherOptions{})
	t.Cleanup(func() { _ = kv.Close(context.Background()) })
	if err := kv.PublishSync(context.Background(), denial("agent-1")); err != nil {
		t.Fatalf("publishing event: %v", err)
	}

	reader := Reader{JS: testkit.JetStream(t, srv), Codec: sw.operator.Codec(t, nil)}
	got := waitSecureThreats(t, reader, func(ts []Threat) bool { return len(ts) == 1 })
	if got[0].RuleID != "event-forged" {
		t.Errorf("rule: got %q, want event-forged", got[0].RuleID)
	}
	if got[0].Identity != "" {
		t.Errorf("identity: got %q, want none", got[0].Identity)
	}
}

func waitSecureThreats(t *testing.T, r Reader, cond func([]Threat) bool) []Threat {
	t.Helper()

	var got []Threat
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		var err error
		if got, err = r.ListThreats(context.Background(), ThreatFilter{}); err != nil {
			t.Fatalf("ListThreats: %v", err)
		}
		if cond(got) {
			return got
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("threats did not reach the expected state in 20s, last: %+v", got)

	return nil
}

func TestThreatQuerySubject(t *testing.T) {
	srv := testkit.NATSServer(t)
	sw := newSecureWorld(t)
	agent := sw.world.AddParty(t, "agent-1", "agent", "agent")
	startSecure(t, srv, busClient(t, srv, sw.monitor.Codec(t, nil)))

	kv := events.NewPublisher(busClient(t, srv, sw.keyvault.Codec(t, nil)), "keyvault",
		events.PublisherOptions{})
	t.Cleanup(func() { _ = kv.Close(context.Background()) })
	for range 5 {
		if err := kv.PublishSync(context.Background(), denial("agent-1")); err != nil {
			t.Fatalf("publishing event: %v", err)
		}
	}
	reader := Reader{JS: testkit.JetStream(t, srv), Codec: sw.operator.Codec(t, nil)}
	waitSecureThreats(t, reader, func(ts []Threat) bool { return len(ts) == 1 })

	ctx := context.Background()
	op := busClient(t, srv, sw.operator.Codec(t, nil))
	var reply struct {
		Threats []Threat `json:"threats"`
	}
	err := op.Request(ctx, SubjectThreats, "service:monitor",
		ThreatFilter{Type: "UNAUTHORIZED_ACCESS"}, &reply)
	if err != nil {
		t.Fatalf("operator request: %v", err)
	}
	if len(reply.Threats) != 1 || reply.Threats[0].Identity != "agent-1" {
		t.Errorf("operator reply: got %+v, want one threat about agent-1", reply.Threats)
	}

	err = op.Request(ctx, SubjectThreats, "service:monitor", ThreatFilter{Type: "NOPE"}, &reply)
	if !errors.Is(err, errs.InvalidRequest) {
		t.Errorf("bad type filter: got %v, want invalid_request", err)
	}

	ag := busClient(t, srv, agent.Codec(t, nil))
	err = ag.Request(ctx, SubjectThreats, "service:monitor", ThreatFilter{}, &reply)
	if !errors.Is(err, errs.AccessDenied) {
		t.Errorf("agent request: got %v, want access_denied", err)
	}
}
