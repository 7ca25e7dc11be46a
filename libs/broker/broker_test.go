package broker_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"

	"github.com/nodexsec/nodex/libs/broker"
	"github.com/nodexsec/nodex/libs/bus"
	"github.com/nodexsec/nodex/libs/envelope"
	"github.com/nodexsec/nodex/libs/identity"
)

// env is a running broker with the bootstrap identities published.
type env struct {
	b     *broker.Broker
	setup *identity.Setup
	admin *identity.Admin
}

func startEnv(t testing.TB, opts ...func(*broker.Config)) *env {
	t.Helper()

	ctx := context.Background()
	setup, err := identity.Bootstrap(t.TempDir())
	if err != nil {
		t.Fatalf("Bootstrap: %v", err)
	}
	cfg := broker.Config{
		DataDir: t.TempDir(), Root: setup.Root.Public(), Authority: &setup.Authority,
		HeartbeatInterval: 200 * time.Millisecond,
		OnError:           func(err error) { t.Logf("broker: %v", err) },
	}
	for _, o := range opts {
		o(&cfg)
	}
	b, err := broker.Start(ctx, cfg)
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(b.Shutdown)
	if err := setup.Publish(ctx, b.Registry()); err != nil {
		t.Fatalf("Publish: %v", err)
	}
	e := &env{b: b, setup: setup, admin: identity.NewAdmin(b.Registry(), setup.Root)}
	// Each distinct error of the view is logged once, so that a start that
	// never becomes fresh shows why.
	var lastMsg string
	waitFor(t, "bootstrap identities in the broker view", func() bool {
		_, err := b.View().Active(identity.DemoAgentID)
		msg := ""
		if err != nil {
			// A stale view's message carries the heartbeat's age; drop it.
			msg, _, _ = strings.Cut(err.Error(), "last heartbeat")
		}
		if err != nil && msg != lastMsg {
			lastMsg = msg
			rejected, rejectErr := b.View().Rejected()
			t.Logf("broker view: %v (rejected %d, last rejection %v, mismatched heartbeats %d)",
				err, rejected, rejectErr, b.View().Mismatched())
		}
		return err == nil
	})

	return e
}

func waitFor(t testing.TB, what string, cond func() bool) time.Duration {
	t.Helper()

	start := time.Now()
	// Generous: under -race beside other suites a KV watch can take
	// seconds to deliver.
	const bound = 30 * time.Second
	for time.Since(start) < bound {
		if cond() {
			return time.Since(start)
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatalf("%s: not true after %s", what, bound)

	return 0
}

// client is a connection that records asynchronous server errors, where
// NATS reports permission violations.
type client struct {
	nc   *nats.Conn
	mu   sync.Mutex
	errs []error
}

func (e *env) connect(t testing.TB, creds *identity.Credentials) *client {
	t.Helper()

	c := &client{}
	nc, err := broker.Connect(context.Background(), e.b.ClientURL(), creds,
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
			c.mu.Lock()
			c.errs = append(c.errs, err)
			c.mu.Unlock()
		}))
	if err != nil {
		t.Fatalf("Connect as %q: %v", creds.ID, err)
	}
	t.Cleanup(nc.Close)
	c.nc = nc

	return c
}

// expectViolation waits for a permission violation naming subject.
func (c *client) expectViolation(t *testing.T, subject string) {
	t.Helper()

	waitFor(t, "permission violation on "+subject, func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()

		for _, err := range c.errs {
			msg := err.Error()
			if strings.Contains(msg, "Permissions Violation") && strings.Contains(msg, subject) {
				return true
			}
		}

		return false
	})
}

func (c *client) expectNoViolation(t *testing.T) {
	t.Helper()

	if err := c.nc.Flush(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond)
	c.mu.Lock()
	defer c.mu.Unlock()

	for _, err := range c.errs {
		t.Errorf("unexpected async error: %v", err)
	}
}

func TestAgentRequestReachesService(t *testing.T) {
	e := startEnv(t)
	svc := e.connect(t, e.setup.Creds["codesec"])
	if _, err := svc.nc.QueueSubscribe("nodex.v1.codesec.submit", "codesec",
		func(m *nats.Msg) { _ = m.Respond([]byte("ok")) }); err != nil {
		t.Fatal(err)
	}
	svc.expectNoViolation(t)

	agent := e.connect(t, e.setup.Creds[identity.DemoAgentID])
	reply, err := agent.nc.Request("nodex.v1.codesec.submit", []byte("x"), 2*time.Second)
	if err != nil {
		t.Fatalf("agent request: %v", err)
	}
	if string(reply.Data) != "ok" {
		t.Errorf("reply = %q, want ok", reply.Data)
	}
	agent.expectNoViolation(t)
	svc.expectNoViolation(t)
}

func TestAgentReachesEveryRequestService(t *testing.T) {
	e := startEnv(t)
	agent := e.connect(t, e.setup.Creds[identity.DemoAgentID])
	for _, svc := range identity.Services {
		subject := "nodex.v1." + svc + ".ping"
		server := e.connect(t, e.setup.Creds[svc])
		if _, err := server.nc.Subscribe(subject, func(m *nats.Msg) {
			_ = m.Respond([]byte(svc))
		}); err != nil {
			t.Fatal(err)
		}
		if err := server.nc.Flush(); err != nil {
			t.Fatal(err)
		}
		reply, err := agent.nc.Request(subject, nil, 2*time.Second)
		if err != nil {
			t.Errorf("agent request to %s: %v", subject, err)
			continue
		}
		if string(reply.Data) != svc {
			t.Errorf("reply from %s = %q, want %q", subject, reply.Data, svc)
		}
	}
	agent.expectNoViolation(t)
}

func TestAgentCannotSubscribeNodex(t *testing.T) {
	e := startEnv(t)
	agent := e.connect(t, e.setup.Creds[identity.DemoAgentID])
	got := make(chan *nats.Msg, 1)
	if _, err := agent.nc.ChanSubscribe("nodex.>", got); err != nil {
		t.Fatal(err)
	}
	agent.expectViolation(t, "nodex.>")

	op := e.connect(t, e.setup.Creds[identity.OperatorID])
	if err := op.nc.Publish("nodex.v1.codesec.submit", []byte("secret")); err != nil {
		t.Fatal(err)
	}
	select {
	case m := <-got:
		t.Fatalf("agent received %q on %s", m.Data, m.Subject)
	case <-time.After(200 * time.Millisecond):
	}
}

func TestAgentCannotReadOtherInbox(t *testing.T) {
	ctx := context.Background()
	e := startEnv(t)
	other, err := e.admin.Create(ctx, "agent-other", identity.KindAgent,
		[]string{identity.RoleAgent})
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	agent := e.connect(t, e.setup.Creds[identity.DemoAgentID])
	for _, subject := range []string{"_INBOX.agent-other.>", "_INBOX.>", "_INBOX.*.>"} {
		if _, err := agent.nc.SubscribeSync(subject); err != nil {
			t.Fatal(err)
		}
		agent.expectViolation(t, subject)
	}

	waitFor(t, "new agent in view", func() bool {
		_, err := e.b.View().Active("agent-other")
		return err == nil
	})
	victim := e.connect(t, other)
	sub, err := victim.nc.SubscribeSync("_INBOX.agent-other.x")
	if err != nil {
		t.Fatal(err)
	}
	victim.expectNoViolation(t)
	_ = sub
}

func TestAgentCannotPublishEvents(t *testing.T) {
	e := startEnv(t)
	mon := e.connect(t, e.setup.Creds[identity.OperatorID])
	seen, err := mon.nc.SubscribeSync("nodex.v1.events.>")
	if err != nil {
		t.Fatal(err)
	}
	mon.expectNoViolation(t)

	agent := e.connect(t, e.setup.Creds[identity.DemoAgentID])
	for _, subject := range []string{"nodex.v1.events.codesec.forged", "nodex.v1.events.agent.x"} {
		if err := agent.nc.Publish(subject, []byte("forged")); err != nil {
			t.Fatal(err)
		}
		agent.expectViolation(t, subject)
	}
	if m, err := seen.NextMsg(200 * time.Millisecond); err == nil {
		t.Fatalf("forged event delivered on %s", m.Subject)
	}
}

func TestServiceCannotUseOtherServiceSubjects(t *testing.T) {
	e := startEnv(t)
	svc := e.connect(t, e.setup.Creds["codesec"])

	if err := svc.nc.Publish("nodex.v1.events.keyvault.key_retrieved", []byte("x")); err != nil {
		t.Fatal(err)
	}
	svc.expectViolation(t, "nodex.v1.events.keyvault.key_retrieved")
	if _, err := svc.nc.SubscribeSync("nodex.v1.keyvault.>"); err != nil {
		t.Fatal(err)
	}
	svc.expectViolation(t, "nodex.v1.keyvault.>")
	if err := svc.nc.Publish("nodex.v1.threats.code_injection", []byte("x")); err != nil {
		t.Fatal(err)
	}
	svc.expectViolation(t, "nodex.v1.threats.code_injection")
}

func TestSuspensionClosesConnection(t *testing.T) {
	ctx := context.Background()
	e := startEnv(t)
	agent := e.connect(t, e.setup.Creds[identity.DemoAgentID])
	if err := agent.nc.Flush(); err != nil {
		t.Fatal(err)
	}

	if err := e.admin.Suspend(ctx, identity.DemoAgentID); err != nil {
		t.Fatalf("Suspend: %v", err)
	}
	took := waitFor(t, "suspended connection closed", func() bool {
		return !agent.nc.IsConnected()
	})
	t.Logf("connection closed %s after suspension", took)

	// The client keeps trying to reconnect; every attempt must fail.
	time.Sleep(1500 * time.Millisecond)
	if agent.nc.IsConnected() {
		t.Fatal("suspended identity reconnected")
	}
	_, err := broker.Connect(ctx, e.b.ClientURL(), e.setup.Creds[identity.DemoAgentID],
		nats.NoReconnect())
	if err == nil {
		t.Fatal("suspended identity opened a new connection")
	}

	if err := e.admin.Unsuspend(ctx, identity.DemoAgentID); err != nil {
		t.Fatalf("Unsuspend: %v", err)
	}
	waitFor(t, "unsuspended identity reconnects", func() bool { return agent.nc.IsConnected() })
}

// TestRoleChangeRenewsPermissions changes the roles of a connected agent:
// the broker closes its connection, and the client's reconnect gets the
// new permissions, so a removed role's wrap subjects are denied at once.
// A change that leaves the permissions as they were closes nothing.
func TestRoleChangeRenewsPermissions(t *testing.T) {
	ctx := context.Background()
	e := startEnv(t)
	agent := e.connect(t, e.setup.Creds[identity.DemoAgentID])
	if err := agent.nc.Flush(); err != nil {
		t.Fatal(err)
	}
	ident, err := e.admin.Get(ctx, identity.DemoAgentID)
	if err != nil {
		t.Fatal(err)
	}
	base := slices.Clone(ident.Roles)
	reconnected := func(n uint64) func() bool {
		return func() bool { return agent.nc.Stats().Reconnects >= n && agent.nc.IsConnected() }
	}

	const role = "key-reader:openai"
	if err := e.admin.SetRoles(ctx, identity.DemoAgentID, append(slices.Clone(base), role)); err != nil {
		t.Fatalf("SetRoles adding %s: %v", role, err)
	}
	waitFor(t, "reconnect after a role was added", reconnected(1))

	if err := e.admin.SetRoles(ctx, identity.DemoAgentID, base); err != nil {
		t.Fatalf("SetRoles removing %s: %v", role, err)
	}
	waitFor(t, "reconnect after a role was removed", reconnected(2))
	wrap := "$JS.API.DIRECT.GET.KV_" + envelope.WrapBucket + ".$KV." + envelope.WrapBucket +
		".wrap.a.b." + envelope.WrapRecipientToken(envelope.RecipientRole, role) + ".c"
	if err := agent.nc.Publish(wrap, nil); err != nil {
		t.Fatal(err)
	}
	agent.expectViolation(t, wrap)

	if err := e.admin.SetRoles(ctx, identity.DemoAgentID, slices.Clone(base)); err != nil {
		t.Fatalf("SetRoles with the same roles: %v", err)
	}
	time.Sleep(time.Second)
	if got := agent.nc.Stats().Reconnects; got != 2 {
		t.Errorf("reconnects after a change that kept the permissions: %d, want 2", got)
	}
}

func TestRevocationClosesConnection(t *testing.T) {
	ctx := context.Background()
	e := startEnv(t)
	agent := e.connect(t, e.setup.Creds[identity.DemoAgentID])
	auth := identity.NewAuthorityWriter(e.b.Registry(), e.setup.Authority)
	if err := auth.Contain(ctx, identity.DemoAgentID, identity.StatusRevoked); err != nil {
		t.Fatalf("Contain: %v", err)
	}
	waitFor(t, "revoked connection closed", func() bool { return !agent.nc.IsConnected() })
}

func TestAddedIdentityConnects(t *testing.T) {
	ctx := context.Background()
	e := startEnv(t)
	creds, err := e.admin.Create(ctx, "agent-new", identity.KindAgent,
		[]string{identity.RoleAgent})
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	waitFor(t, "added identity connects", func() bool {
		nc, err := broker.Connect(ctx, e.b.ClientURL(), creds, nats.NoReconnect())
		if err != nil {
			return false
		}
		nc.Close()
		return true
	})
}

// TestConnectBeforeViewHasIdentity connects with an nkey that the
// registry does not hold yet and registers the identity 200 ms later: the
// callout waits for the view instead of rejecting a just-created identity.
func TestConnectBeforeViewHasIdentity(t *testing.T) {
	e := startEnv(t)
	if err := connectWhileRegistering(t, e); err != nil {
		t.Fatalf("connecting while the identity was being registered: %v", err)
	}
}

// connectWhileRegistering connects as a new agent whose identity it
// registers 200 ms after the connection attempt starts, and returns the
// connection's error. opts are added to the connection's options.
func connectWhileRegistering(t *testing.T, e *env, opts ...nats.Option) error {
	t.Helper()
	ctx := context.Background()
	creds, err := identity.NewCredentials("agent-late", identity.KindAgent, e.setup.Root.Public())
	if err != nil {
		t.Fatal(err)
	}
	ident, err := creds.Public([]string{identity.RoleAgent}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	connected := make(chan error, 1)
	go func() {
		nc, err := broker.Connect(ctx, e.b.ClientURL(), creds,
			append([]nats.Option{nats.NoReconnect()}, opts...)...)
		if err == nil {
			nc.Close()
		}
		connected <- err
	}()
	time.Sleep(200 * time.Millisecond)
	if err := e.admin.Register(ctx, ident); err != nil {
		t.Fatalf("Register: %v", err)
	}

	return <-connected
}

// TestLateKeyWaitNotTakenByOneNetwork fills the callout's waits for
// unknown nkeys with made-up identities from eight addresses of
// 127.0.0.0/24 while an identity that is being registered connects from
// 127.0.1.2: it must still get its wait.
func TestLateKeyWaitNotTakenByOneNetwork(t *testing.T) {
	ctx := context.Background()
	e := startEnv(t)

	stop := make(chan struct{})
	var flood sync.WaitGroup
	for i := range 24 {
		flood.Add(1)
		from := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, byte(10+i%8))},
			Timeout: 5 * time.Second}
		go func() {
			defer flood.Done()
			for n := 0; ; n++ {
				select {
				case <-stop:
					return
				default:
				}
				c, err := identity.NewCredentials(fmt.Sprintf("agent-made-up-%d-%d", i, n),
					identity.KindAgent, e.setup.Root.Public())
				if err != nil {
					t.Error(err)
					return
				}
				if nc, err := broker.Connect(ctx, e.b.ClientURL(), c, nats.NoReconnect(),
					nats.SetCustomDialer(from)); err == nil {
					nc.Close()
					t.Error("a made-up identity connected")
				}
			}
		}()
	}
	defer func() { close(stop); flood.Wait() }()
	time.Sleep(300 * time.Millisecond)

	other := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 1, 2)},
		Timeout: 5 * time.Second}
	if err := connectWhileRegistering(t, e, nats.SetCustomDialer(other)); err != nil {
		t.Fatalf("connecting from another network while one sent made-up nkeys: %v", err)
	}
}

func TestWrongNkeyRejected(t *testing.T) {
	ctx := context.Background()
	e := startEnv(t)
	real := e.setup.Creds[identity.DemoAgentID]
	realKP, err := real.NATSKeyPair()
	if err != nil {
		t.Fatal(err)
	}
	realPub, _ := realKP.PublicKey()
	otherKP, err := nkeys.CreateUser()
	if err != nil {
		t.Fatal(err)
	}
	otherPub, _ := otherKP.PublicKey()

	tests := []struct {
		name string
		pub  string
		sign nats.SignatureHandler
	}{
		{"unregistered nkey", otherPub, otherKP.Sign},
		{"registered nkey signed by another key", realPub, otherKP.Sign},
		{"empty signature", realPub, func([]byte) ([]byte, error) { return nil, nil }},
	}
	for _, tt := range tests {
		nc, err := nats.Connect(e.b.ClientURL(), nats.Nkey(tt.pub, tt.sign), nats.NoReconnect())
		if err == nil {
			nc.Close()
			t.Errorf("%s: connection accepted", tt.name)
			continue
		}
		if !errors.Is(err, nats.ErrAuthorization) &&
			!strings.Contains(strings.ToLower(err.Error()), "authorization") {
			t.Errorf("%s: err = %v, want an authorization error", tt.name, err)
		}
	}

	// No credentials at all.
	if nc, err := nats.Connect(e.b.ClientURL(), nats.NoReconnect()); err == nil {
		nc.Close()
		t.Error("anonymous connection accepted")
	}
	_ = ctx
}

func TestStaleRegistryRejectsConnections(t *testing.T) {
	ctx := context.Background()
	setup, err := identity.Bootstrap(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	// No authority: the only heartbeat is the one Publish writes. The view
	// applies every bootstrap record before it, and a full-package run
	// under -race on a loaded machine once saw it only after a 300ms
	// bound had passed, so the bound is 2s.
	b, err := broker.Start(ctx, broker.Config{
		DataDir: t.TempDir(), Root: setup.Root.Public(), StaleAfter: 2 * time.Second,
		OnError: func(err error) { t.Logf("broker: %v", err) },
	})
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(b.Shutdown)
	if err := setup.Publish(ctx, b.Registry()); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "registry fresh after the first heartbeat", func() bool {
		return b.View().Fresh() == nil
	})
	waitFor(t, "registry goes stale", func() bool {
		return errors.Is(b.View().Fresh(), identity.ErrStale)
	})
	if nc, err := broker.Connect(ctx, b.ClientURL(), setup.Creds["codesec"],
		nats.NoReconnect()); err == nil {
		nc.Close()
		t.Fatal("connection accepted on a stale registry view")
	}
}

func TestAgentReadsRegistryButCannotWrite(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	e := startEnv(t)
	agent := e.connect(t, e.setup.Creds[identity.DemoAgentID])
	js, err := jetstream.New(agent.nc)
	if err != nil {
		t.Fatal(err)
	}
	kv, err := js.KeyValue(ctx, identity.Bucket)
	if err != nil {
		t.Fatalf("agent binding registry: %v", err)
	}
	v, err := identity.Watch(ctx, kv, e.setup.Root.Public(), identity.ViewOptions{})
	if err != nil {
		t.Fatalf("agent watching registry: %v", err)
	}
	defer v.Close()
	if _, err := v.Active("codesec"); err != nil {
		t.Errorf("agent view of codesec: %v", err)
	}

	// A denied publish gets no reply, so these calls end at a short deadline.
	short, cancelShort := context.WithTimeout(ctx, time.Second)
	defer cancelShort()
	if _, err := kv.Put(short, identity.IdentityKey(identity.DemoAgentID), []byte("{}")); err == nil {
		t.Error("agent wrote to the registry")
	}
	short2, cancelShort2 := context.WithTimeout(ctx, time.Second)
	defer cancelShort2()
	if _, err := js.CreateStream(short2, jetstream.StreamConfig{
		Name: "AGENT_OWN", Subjects: []string{"agent.own"},
	}); err == nil {
		t.Error("agent created a stream")
	}
}

func TestServiceManagesOwnBucket(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	e := startEnv(t)
	svc := e.connect(t, e.setup.Creds["keyvault"])
	js, err := jetstream.New(svc.nc)
	if err != nil {
		t.Fatal(err)
	}
	kv, err := js.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: "NODEX_KEYVAULT"})
	if err != nil {
		t.Fatalf("keyvault creating its bucket: %v", err)
	}
	if _, err := kv.Put(ctx, "k", []byte("v")); err != nil {
		t.Fatalf("keyvault writing its bucket: %v", err)
	}
	short, cancelShort := context.WithTimeout(ctx, time.Second)
	defer cancelShort()
	if _, err := js.CreateKeyValue(short, jetstream.KeyValueConfig{Bucket: "NODEX_POLICY"}); err == nil {
		t.Error("keyvault created the policy bucket")
	}
}

// wrapKey returns a wrap key from sender to an identity or role recipient.
func wrapKey(sender string, typ envelope.RecipientType, name string, kid byte) envelope.WrapKey {
	k := envelope.WrapKey{Sender: sender, Recipient: envelope.Recipient{Type: typ, Name: name, Version: 3}}
	k.KID[0] = kid

	return k
}

func TestAgentWritesOnlyOwnWraps(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	e := startEnv(t)
	if _, err := bus.NewWrapStore(ctx, e.b.JetStream(), 0); err != nil {
		t.Fatal(err)
	}
	agent := e.connect(t, e.setup.Creds[identity.DemoAgentID])
	js, err := jetstream.New(agent.nc)
	if err != nil {
		t.Fatal(err)
	}
	ws := bus.BindWrapStore(js)

	own := wrapKey(identity.DemoAgentID, envelope.RecipientRole, "service:codesec", 1)
	if err := ws.Create(ctx, own, []byte("wrap")); err != nil {
		t.Errorf("agent creating its own wrap: %v", err)
	}
	if err := ws.Create(ctx, own, []byte("again")); !errors.Is(err, envelope.ErrWrapExists) {
		t.Errorf("agent creating its wrap twice: got %v, want ErrWrapExists", err)
	}
	if got, err := ws.Get(ctx, own); err != nil || string(got) != "wrap" {
		t.Errorf("agent reading its own wrap: got %q, %v", got, err)
	}
	theirs := wrapKey("codesec", envelope.RecipientRole, "service:monitor", 2)
	short, cancelShort := context.WithTimeout(ctx, time.Second)
	defer cancelShort()
	if err := ws.Create(short, theirs, []byte("forged")); err == nil {
		t.Error("agent created a wrap under another sender")
	}
}

func TestAgentReadsOnlyWrapsAddressedToIt(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	e := startEnv(t)
	adminWraps, err := bus.NewWrapStore(ctx, e.b.JetStream(), 0)
	if err != nil {
		t.Fatal(err)
	}
	readable := []envelope.WrapKey{
		wrapKey("codesec", envelope.RecipientIdentity, identity.DemoAgentID, 1),
		wrapKey("codesec", envelope.RecipientRole, identity.RoleAgent, 2),
	}
	hidden := []envelope.WrapKey{
		wrapKey("codesec", envelope.RecipientIdentity, "monitor", 3),
		wrapKey("codesec", envelope.RecipientRole, identity.ServiceRole("monitor"), 4),
		wrapKey("agent-other", envelope.RecipientRole, identity.ServiceRole("codesec"), 5),
	}
	for _, k := range append(append([]envelope.WrapKey{}, readable...), hidden...) {
		if err := adminWraps.Create(ctx, k, []byte(k.String())); err != nil {
			t.Fatal(err)
		}
	}
	agent := e.connect(t, e.setup.Creds[identity.DemoAgentID])
	js, err := jetstream.New(agent.nc)
	if err != nil {
		t.Fatal(err)
	}
	ws := bus.BindWrapStore(js)
	for _, k := range readable {
		if got, err := ws.Get(ctx, k); err != nil || string(got) != k.String() {
			t.Errorf("agent reading %s: got %q, %v", k, got, err)
		}
	}
	// A denied request gets no reply, so each read ends at a short deadline.
	for _, k := range hidden {
		short, cancelShort := context.WithTimeout(ctx, 500*time.Millisecond)
		got, err := ws.Get(short, k)
		cancelShort()
		if err == nil {
			t.Errorf("agent read %s: %q", k, got)
		}
		agent.expectViolation(t, "wrap."+strings.Split(k.String(), ".")[1])
	}

	// Every other way into the bucket is denied: its stream info lists the
	// keys, a message get or a consumer reads any of them.
	const stream = "KV_" + envelope.WrapBucket
	for _, subject := range []string{
		"$JS.API.STREAM.INFO." + stream,
		"$JS.API.STREAM.MSG.GET." + stream,
		"$JS.API.DIRECT.GET." + stream,
		"$JS.API.CONSUMER.CREATE." + stream,
		"$JS.API.CONSUMER.CREATE." + stream + ".c.$KV.NODEX_WRAPS.>",
		"$JS.API.CONSUMER.DURABLE.CREATE." + stream + ".c",
		"$JS.API.DIRECT.GET." + stream + ".$KV.NODEX_WRAPS.>",
	} {
		if err := agent.nc.Publish(subject, []byte(`{"last_by_subj":"$KV.NODEX_WRAPS.>"}`)); err != nil {
			t.Fatal(err)
		}
		agent.expectViolation(t, subject)
	}
}

func TestEventsStreamPermissions(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	e := startEnv(t)
	if _, err := e.b.JetStream().CreateStream(ctx, jetstream.StreamConfig{
		Name: "NODEX_EVENTS", Subjects: []string{"nodex.v1.events.>"},
		DenyDelete: true, DenyPurge: true,
	}); err != nil {
		t.Fatal(err)
	}

	svc := e.connect(t, e.setup.Creds["codesec"])
	svcJS, err := jetstream.New(svc.nc)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := svcJS.Publish(ctx, "nodex.v1.events.codesec.submitted", []byte("e")); err != nil {
		t.Fatalf("codesec publishing its event: %v", err)
	}

	mon := e.connect(t, e.setup.Creds["monitor"])
	monJS, err := jetstream.New(mon.nc)
	if err != nil {
		t.Fatal(err)
	}
	cons, err := monJS.CreateOrUpdateConsumer(ctx, "NODEX_EVENTS", jetstream.ConsumerConfig{
		Durable: "monitor-ingest", AckPolicy: jetstream.AckExplicitPolicy,
	})
	if err != nil {
		t.Fatalf("monitor creating its consumer: %v", err)
	}
	batch, err := cons.Fetch(1, jetstream.FetchMaxWait(2*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for m := range batch.Messages() {
		if err := m.Ack(); err != nil {
			t.Errorf("monitor acking: %v", err)
		}
		n++
	}
	if n != 1 {
		t.Errorf("monitor fetched %d events, want 1", n)
	}

	deny := func(name string, op func(context.Context) error) {
		t.Helper()
		short, cancelShort := context.WithTimeout(ctx, time.Second)
		defer cancelShort()
		if err := op(short); err == nil {
			t.Errorf("%s succeeded", name)
		}
	}
	agent := e.connect(t, e.setup.Creds[identity.DemoAgentID])
	agentJS, err := jetstream.New(agent.nc)
	if err != nil {
		t.Fatal(err)
	}
	deny("agent reading NODEX_EVENTS", func(ctx context.Context) error {
		_, err := agentJS.CreateOrUpdateConsumer(ctx, "NODEX_EVENTS", jetstream.ConsumerConfig{})
		return err
	})
	deny("monitor deleting NODEX_EVENTS", func(ctx context.Context) error {
		return monJS.DeleteStream(ctx, "NODEX_EVENTS")
	})
	deny("codesec updating NODEX_EVENTS", func(ctx context.Context) error {
		_, err := svcJS.UpdateStream(ctx, jetstream.StreamConfig{
			Name: "NODEX_EVENTS", Subjects: []string{"nodex.v1.events.>"},
		})
		return err
	})
}

func TestServiceRoleOnAgentGrantsNothing(t *testing.T) {
	ctx := context.Background()
	e := startEnv(t)
	creds, err := e.admin.Create(ctx, "agent-posing", identity.KindAgent,
		[]string{identity.RoleAgent, identity.ServiceRole("keyvault"), identity.RoleOperator})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "agent in view", func() bool {
		_, err := e.b.View().Active("agent-posing")
		return err == nil
	})
	agent := e.connect(t, creds)
	if _, err := agent.nc.SubscribeSync("nodex.v1.keyvault.retrieve"); err != nil {
		t.Fatal(err)
	}
	agent.expectViolation(t, "nodex.v1.keyvault.retrieve")
	if err := agent.nc.Publish("$JS.API.STREAM.DELETE.NODEX_WRAPS", nil); err != nil {
		t.Fatal(err)
	}
	agent.expectViolation(t, "$JS.API.STREAM.DELETE.NODEX_WRAPS")
}

func TestAgentReadsOnlyOwnResults(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	e := startEnv(t)
	const stream = "NODEX_SANDBOX_RESULTS"
	if _, err := e.b.JetStream().CreateStream(ctx, jetstream.StreamConfig{
		Name: stream, Subjects: []string{"nodex.v1.sandbox.results.>"},
	}); err != nil {
		t.Fatal(err)
	}
	for _, to := range []string{"agent_demo", "agent_other"} {
		if _, err := e.b.JetStream().Publish(ctx, "nodex.v1.sandbox.results."+to,
			[]byte(to)); err != nil {
			t.Fatal(err)
		}
	}
	agent := e.connect(t, e.setup.Creds[identity.DemoAgentID])
	js, err := jetstream.New(agent.nc)
	if err != nil {
		t.Fatal(err)
	}
	cons, err := js.CreateOrUpdateConsumer(ctx, stream, jetstream.ConsumerConfig{
		Durable:       broker.ResultsConsumer(identity.DemoAgentID),
		FilterSubject: "nodex.v1.sandbox.results.agent_demo",
		AckPolicy:     jetstream.AckExplicitPolicy,
	})
	if err != nil {
		t.Fatalf("agent creating its results consumer: %v", err)
	}
	msg, err := cons.Next(jetstream.FetchMaxWait(2 * time.Second))
	if err != nil {
		t.Fatalf("agent reading its result: %v", err)
	}
	if string(msg.Data()) != "agent_demo" {
		t.Errorf("result = %q, want agent_demo", msg.Data())
	}
	if err := msg.Ack(); err != nil {
		t.Errorf("agent acking its result: %v", err)
	}

	for _, cfg := range []jetstream.ConsumerConfig{
		{Durable: broker.ResultsConsumer(identity.DemoAgentID),
			FilterSubject: "nodex.v1.sandbox.results.agent_other"},
		{Durable: "results-agent-other", FilterSubject: "nodex.v1.sandbox.results.agent_other"},
		{Durable: broker.ResultsConsumer(identity.DemoAgentID)},
	} {
		short, cancelShort := context.WithTimeout(ctx, time.Second)
		_, err := js.CreateOrUpdateConsumer(short, stream, cfg)
		cancelShort()
		if err == nil {
			t.Errorf("agent created consumer %q filtered on %q", cfg.Durable, cfg.FilterSubject)
		}
	}
}
