package policy_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"maps"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/nodexsec/nodex/libs/authz"
	"github.com/nodexsec/nodex/libs/bus"
	"github.com/nodexsec/nodex/libs/envelope"
	"github.com/nodexsec/nodex/libs/envelope/envtest"
	"github.com/nodexsec/nodex/libs/errs"
	"github.com/nodexsec/nodex/libs/events"
	"github.com/nodexsec/nodex/libs/testkit"
	"github.com/nodexsec/nodex/services/policy/internal/casefile"
	"github.com/nodexsec/nodex/services/policy/policies"
	"github.com/nodexsec/nodex/services/policy/policy"
)

const policyRole = "service:policy"

type world struct {
	srv      *server.Server
	policy   *bus.Client
	operator *bus.Client
	agent    *bus.Client
	codesec  *bus.Client
	// audit reads NODEX_EVENTS as a holder of the events role.
	audit *bus.Client
	// local decides with libs/authz on the same bucket the service uses.
	local *authz.Engine
	pub   *events.Publisher
	// signer holds the policy identity's keys, which sign bucket values.
	signer authz.Signer
	dir    envelope.Directory
}

func client(t testing.TB, srv *server.Server, p *envtest.Party) *bus.Client {
	t.Helper()

	c, err := bus.New(bus.Config{Conn: testkit.Connect(t, srv), Codec: p.Codec(t, nil),
		RequestsPerSecond: 1e6, RequestBurst: 1e6})
	if err != nil {
		t.Fatalf("creating bus client for %s: %v", p.ID, err)
	}
	t.Cleanup(func() { _ = c.Drain(context.Background()) })

	return c
}

// start runs the policy service on a fresh embedded server until the test
// ends, and a local engine that watches the same bucket.
func start(t testing.TB) *world {
	t.Helper()
	ctx := context.Background()

	srv := testkit.NATSServer(t)
	js := testkit.JetStream(t, srv)
	ws, err := bus.NewWrapStore(ctx, js, 0)
	if err != nil {
		t.Fatalf("creating wrap store: %v", err)
	}
	if _, err := events.EnsureStream(ctx, js, events.StreamOptions{}); err != nil {
		t.Fatalf("creating event stream: %v", err)
	}

	ew := envtest.NewWorld(ws)
	policyParty := ew.AddParty(t, "policy", "service", policyRole)
	w := &world{
		srv:      srv,
		signer:   policyParty.Keys,
		dir:      ew.Dir,
		policy:   client(t, srv, policyParty),
		operator: client(t, srv, ew.AddParty(t, "operator-1", "operator", "operator")),
		agent:    client(t, srv, ew.AddParty(t, "agent-1", "agent", "agent")),
		codesec:  client(t, srv, ew.AddParty(t, "codesec", "service", "service:codesec")),
	}
	w.audit = client(t, srv, ew.AddParty(t, "monitor", "service", events.AudienceRole))
	w.pub = events.NewPublisher(w.policy, "policy", events.PublisherOptions{})

	runCtx, cancel := context.WithCancel(ctx)
	ready := make(chan struct{})
	errc := make(chan error, 1)
	go func() {
		errc <- policy.Run(runCtx, policy.Deps{
			Client: w.policy, Events: w.pub,
			Log:    slog.New(slog.NewTextHandler(io.Discard, nil)),
			Ready:  func() { close(ready) },
			Signer: w.signer, Directory: w.dir,
			// A shared, loaded machine must not turn slow evaluations
			// into timeouts that deny.
			Config: policy.Config{DecideTimeout: 10 * time.Second},
		})
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-errc; err != nil {
			t.Errorf("Run: %v", err)
		}
		_ = w.pub.Close(context.Background())
	})

	select {
	case <-ready:
	case err := <-errc:
		t.Fatalf("Run returned before ready: %v", err)
	case <-time.After(15 * time.Second):
		t.Fatal("policy service not ready after 15s")
	}

	w.local = watchLocal(t, js, w.dir)

	return w
}

func watchLocal(t testing.TB, js jetstream.JetStream, dir envelope.Directory) *authz.Engine {
	t.Helper()

	kv, err := js.KeyValue(context.Background(), authz.KVBucket)
	if err != nil {
		t.Fatalf("opening policy bucket: %v", err)
	}
	e := authz.New(authz.Options{Timeout: 10 * time.Second})
	watcher, err := authz.WatchKV(context.Background(), kv, e, authz.WatchOptions{
		Verifier: &authz.Verifier{Directory: dir},
	})
	if err != nil {
		t.Fatalf("watching policy bucket: %v", err)
	}
	t.Cleanup(watcher.Stop)

	return e
}

func (w *world) decide(t testing.TB, c *bus.Client, in authz.Input) (authz.Decision, error) {
	t.Helper()

	var d authz.Decision
	err := c.Request(context.Background(), policy.SubjectDecide, policyRole, in, &d)

	return d, err
}

func TestDecideMatchesLocalEngine(t *testing.T) {
	w := start(t)
	cases, err := casefile.Load("../policies/testdata/cases")
	if err != nil {
		t.Fatal(err)
	}

	ran := 0
	for _, c := range cases {
		if c.Data != nil {
			continue // needs role data other than the defaults
		}
		ran++
		t.Run(c.Name, func(t *testing.T) {
			remote, err := w.decide(t, w.codesec, c.Input)
			if err != nil {
				t.Fatalf("remote decide: %v", err)
			}
			local, localErr := w.local.Decide(context.Background(), c.Input)

			if problem := c.Want.Check(remote, localErr); problem != "" {
				t.Errorf("remote: %s", problem)
			}
			if remote.Allow != local.Allow {
				t.Errorf("allow: remote %v, local %v", remote.Allow, local.Allow)
			}
			if !slicesEqual(remote.Reasons, local.Reasons) {
				t.Errorf("reasons: remote %q, local %q", remote.Reasons, local.Reasons)
			}
			if !slicesEqual(remote.Flags, local.Flags) {
				t.Errorf("flags: remote %q, local %q", remote.Flags, local.Flags)
			}
			if remote.Revision != local.Revision {
				t.Errorf("revision: remote %q, local %q", remote.Revision, local.Revision)
			}
			if remote.ID == "" || remote.ID == local.ID {
				t.Errorf("decision ids remote %q, local %q, want distinct non-empty",
					remote.ID, local.ID)
			}
		})
	}
	if ran < 20 {
		t.Errorf("compared %d cases, want at least 20", ran)
	}

	// Every remote decision is audited, plus the caller's authorization
	// when it is not cached.
	deadline := time.Now().Add(5 * time.Second)
	for w.pub.Published() < uint64(ran+1) && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if got := w.pub.Published(); got < uint64(ran+1) {
		t.Errorf("published %d decision events, want at least %d", got, ran+1)
	}
	if lost := w.pub.Lost(); lost != 0 {
		t.Errorf("lost %d decision events, want 0", lost)
	}
}

func slicesEqual(a, b []string) bool {
	return strings.Join(a, "\x00") == strings.Join(b, "\x00") && len(a) == len(b)
}

func TestAgentCannotDecideOrEdit(t *testing.T) {
	w := start(t)

	_, err := w.decide(t, w.agent, authz.Input{})
	if !errors.Is(err, errs.AccessDenied) {
		t.Errorf("agent decide: got %v, want access_denied", err)
	}

	var reply policy.RoleAddReply
	err = w.agent.Request(context.Background(), policy.SubjectRoleAdd, policyRole,
		policy.RoleAddRequest{Name: "root", Role: authz.Role{Permissions: []authz.Permission{
			{Resource: "*", Actions: []string{"*"}},
		}}}, &reply)
	if !errors.Is(err, errs.AccessDenied) {
		t.Errorf("agent role add: got %v, want access_denied", err)
	}

	var push policy.PushReply
	err = w.agent.Request(context.Background(), policy.SubjectPush, policyRole,
		policy.PushRequest{Modules: map[string]string{"a.rego": "package x"}}, &push)
	if !errors.Is(err, errs.AccessDenied) {
		t.Errorf("agent push: got %v, want access_denied", err)
	}
}

func readEvents() authz.Input {
	return authz.Input{
		Subject: authz.Subject{ID: "agent-1", Kind: authz.KindAgent, Roles: []string{"agent"},
			Status: authz.StatusActive},
		Action:   "read",
		Resource: authz.Resource{Type: "event"},
	}
}

// waitDecision polls the local engine until its decision on in is want.
func waitDecision(t *testing.T, e *authz.Engine, in authz.Input, want bool) time.Duration {
	t.Helper()

	start := time.Now()
	for time.Since(start) < 10*time.Second {
		if d, _ := e.Decide(context.Background(), in); d.Allow == want {
			return time.Since(start)
		}
		time.Sleep(2 * time.Millisecond)
	}
	t.Fatalf("decision did not become allow=%v within 10s", want)

	return 0
}

func TestRoleAddAndBindTakeEffect(t *testing.T) {
	w := start(t)
	ctx := context.Background()

	add := policy.RoleAddRequest{Name: "event-reader", Role: authz.Role{
		Description: "reads the event stream",
		Permissions: []authz.Permission{{Resource: "event", Actions: []string{"read"}}},
	}}
	var added policy.RoleAddReply
	if err := w.operator.Request(ctx, policy.SubjectRoleAdd, policyRole, add, &added); err != nil {
		t.Fatalf("role add: %v", err)
	}
	if !added.Created {
		t.Error("role add reported an existing role")
	}

	err := w.operator.Request(ctx, policy.SubjectRoleAdd, policyRole, add, &added)
	if !errors.Is(err, errs.Conflict) {
		t.Errorf("second role add: got %v, want conflict", err)
	}

	var bound policy.RoleBindReply
	bind := policy.RoleBindRequest{Identity: "agent-1", Role: "event-reader"}
	if err := w.operator.Request(ctx, policy.SubjectRoleBind, policyRole, bind, &bound); err != nil {
		t.Fatalf("role bind: %v", err)
	}
	if len(bound.Roles) != 1 || bound.Roles[0] != "event-reader" {
		t.Errorf("bound roles = %q, want [event-reader]", bound.Roles)
	}
	took := waitDecision(t, w.local, readEvents(), true)
	t.Logf("binding reached a watching engine in %s", took)

	bind.Unbind = true
	if err := w.operator.Request(ctx, policy.SubjectRoleBind, policyRole, bind, &bound); err != nil {
		t.Fatalf("role unbind: %v", err)
	}
	took = waitDecision(t, w.local, readEvents(), false)
	t.Logf("unbinding reached a watching engine in %s", took)
}

func TestRoleRequestsRejectBadInput(t *testing.T) {
	w := start(t)
	ctx := context.Background()

	var bound policy.RoleBindReply
	err := w.operator.Request(ctx, policy.SubjectRoleBind, policyRole,
		policy.RoleBindRequest{Identity: "agent-1", Role: "no-such-role"}, &bound)
	if !errors.Is(err, errs.NotFound) {
		t.Errorf("bind of undefined role: got %v, want not_found", err)
	}

	err = w.operator.Request(ctx, policy.SubjectRoleBind, policyRole,
		policy.RoleBindRequest{Identity: "../agent", Role: "agent"}, &bound)
	if !errors.Is(err, errs.InvalidRequest) {
		t.Errorf("bind of bad identity: got %v, want invalid_request", err)
	}

	var added policy.RoleAddReply
	err = w.operator.Request(ctx, policy.SubjectRoleAdd, policyRole,
		policy.RoleAddRequest{Name: "Operator", Role: authz.Role{Permissions: []authz.Permission{
			{Resource: "*", Actions: []string{"*"}},
		}}}, &added)
	if !errors.Is(err, errs.InvalidRequest) {
		t.Errorf("upper-case role name: got %v, want invalid_request", err)
	}
}

// pushSet returns the default modules with extra files.
func pushSet(t *testing.T, extra map[string]string) policy.PushRequest {
	t.Helper()

	modules, err := policies.Modules()
	if err != nil {
		t.Fatal(err)
	}
	data, err := policies.Data()
	if err != nil {
		t.Fatal(err)
	}
	maps.Copy(modules, extra)

	return policy.PushRequest{Modules: modules, Data: data}
}

func TestBrokenPushKeepsPreviousPolicy(t *testing.T) {
	w := start(t)
	ctx := context.Background()
	in := readEvents()
	in.Subject = authz.Subject{ID: "operator-1", Kind: authz.KindOperator,
		Roles: []string{"operator"}, Status: authz.StatusActive}

	before, err := w.decide(t, w.codesec, in)
	if err != nil || !before.Allow {
		t.Fatalf("before push: %+v, %v; want allow", before, err)
	}

	broken := map[string]map[string]string{
		"syntax error": {"authz.rego": "package nodex.authz\n\ndecision := {"},
		"missing rule": {"authz.rego": "package nodex.authz\n\nother := 1\n"},
		"failing test": {"deny_test.rego": "package nodex.extra_test\n\ntest_fails if false\n"},
	}
	for name, extra := range broken {
		var reply policy.PushReply
		err := w.operator.Request(ctx, policy.SubjectPush, policyRole, pushSet(t, extra), &reply)
		if !errors.Is(err, errs.PolicyInvalid) {
			t.Errorf("%s: got %v, want policy_invalid", name, err)
		}
	}

	after, err := w.decide(t, w.codesec, in)
	if err != nil || !after.Allow || after.Revision != before.Revision {
		t.Errorf("after broken pushes: %+v, %v; want allow by %s", after, err, before.Revision)
	}

	// A working set that denies operators reading events becomes active.
	deny := `package nodex.authz

decision := {"allow": false, "reasons": ["events closed"], "flags": []} if {
	input.resource.type == "event"
} else := base_decision
`
	set := pushSet(t, nil)
	set.Modules["authz.rego"] = strings.Replace(set.Modules["authz.rego"],
		"\ndecision := {", "\nbase_decision := {", 1) + "\n" + strings.TrimPrefix(deny,
		"package nodex.authz\n")
	var reply policy.PushReply
	if err := w.operator.Request(ctx, policy.SubjectPush, policyRole, set, &reply); err != nil {
		t.Fatalf("valid push: %v", err)
	}
	if !strings.HasPrefix(reply.Active, "policy@") || reply.Active == before.Revision {
		t.Errorf("active revision %q after push, want a new one", reply.Active)
	}

	now, err := w.decide(t, w.codesec, in)
	if err != nil || now.Allow || now.Reasons[0] != "events closed" {
		t.Errorf("after valid push: %+v, %v; want deny by the new set", now, err)
	}
}

func TestTestReportsFailures(t *testing.T) {
	w := start(t)

	var reply policy.TestReply
	set := pushSet(t, map[string]string{
		"extra_test.rego": "package nodex.extra_test\n\ntest_fails if false\n",
	})
	err := w.operator.Request(context.Background(), policy.SubjectTest, policyRole, set, &reply)
	if err != nil {
		t.Fatalf("test request: %v", err)
	}
	if reply.OK {
		t.Error("got ok, want a failure")
	}
	if reply.Tests == nil || reply.Tests.Failed != 1 {
		t.Fatalf("got report %+v, want exactly one failure", reply.Tests)
	}
	if reply.Tests.Passed < 20 {
		t.Errorf("got %d passing tests, want the default tests to pass", reply.Tests.Passed)
	}

	set = pushSet(t, map[string]string{"bad.rego": "package nodex.bad\n\nx := "})
	err = w.operator.Request(context.Background(), policy.SubjectTest, policyRole, set, &reply)
	if err != nil {
		t.Fatalf("test request: %v", err)
	}
	if reply.OK || reply.CompileError == "" {
		t.Errorf("got %+v, want a compile error", reply)
	}
}

func TestUnsignedRoleDataIgnored(t *testing.T) {
	w := start(t)
	ctx := context.Background()

	// A writer without the policy identity's key, such as a hostile NATS
	// server, stores role data that binds event-reader to agent-1.
	forged := authz.RBAC{
		Roles: map[string]authz.Role{"event-reader": {Permissions: []authz.Permission{
			{Resource: "event", Actions: []string{"read"}},
		}}},
		Bindings: map[string][]string{"agent-1": {"event-reader"}},
	}
	raw, err := json.Marshal(forged)
	if err != nil {
		t.Fatal(err)
	}
	kv, err := w.policy.JetStream().KeyValue(ctx, authz.KVBucket)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Put(ctx, authz.KeyRBAC, raw); err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond)

	d, err := w.decide(t, w.codesec, readEvents())
	if err != nil {
		t.Fatalf("remote decide: %v", err)
	}
	if d.Allow {
		t.Error("forged role data took effect in the policy service")
	}
	if d, _ := w.local.Decide(ctx, readEvents()); d.Allow {
		t.Error("forged role data took effect in a watching engine")
	}

	// The service rejects edits on top of the forged value instead of signing it.
	var bound policy.RoleBindReply
	err = w.operator.Request(ctx, policy.SubjectRoleBind, policyRole,
		policy.RoleBindRequest{Identity: "agent-2", Role: "agent"}, &bound)
	if !errors.Is(err, errs.Unavailable) {
		t.Errorf("role bind on forged data: got %v, want unavailable", err)
	}
}
