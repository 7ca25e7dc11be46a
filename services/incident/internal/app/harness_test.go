package app_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/nodexsec/nodex/libs/events"
	"github.com/nodexsec/nodex/libs/testkit"
	"github.com/nodexsec/nodex/services/incident/internal/adapters/eventsource"
	"github.com/nodexsec/nodex/services/incident/internal/adapters/kvstore"
	"github.com/nodexsec/nodex/services/incident/internal/app"
	"github.com/nodexsec/nodex/services/incident/internal/domain"
)

// jsSink stores events as plain JSON on JetStream, standing in for the
// envelope layer that the bus adds in production.
type jsSink struct{ js jetstream.JetStream }

func (s jsSink) Publish(ctx context.Context, subject, _ string, body any) error {
	data, err := json.Marshal(body)
	if err != nil {
		return err
	}
	_, err = s.js.Publish(ctx, subject, data)

	return err
}

// clock is a settable test clock.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()

	return c.now
}

func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// directory is a fixed registry view.
type directory struct {
	mu         sync.Mutex
	identities map[string]domain.IdentityInfo
}

func newDirectory() *directory {
	d := &directory{identities: map[string]domain.IdentityInfo{}}
	for _, who := range []domain.IdentityInfo{
		{ID: "agent-demo", Kind: domain.KindAgent},
		{ID: "agent-two", Kind: domain.KindAgent},
		{ID: "codesec", Kind: domain.KindService},
		{ID: "operator", Kind: domain.KindOperator},
		{ID: "operator-two", Kind: domain.KindOperator},
	} {
		who.Known, who.Status = true, "active"
		d.identities[who.ID] = who
	}

	return d
}

func (d *directory) Lookup(_ context.Context, id string) (domain.IdentityInfo, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	who, ok := d.identities[id]
	if !ok {
		return domain.IdentityInfo{ID: id, Kind: domain.KindUnknown}, nil
	}

	return who, nil
}

func (d *directory) ActiveOperators(context.Context) ([]string, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	var ops []string
	for id, who := range d.identities {
		if who.Kind == domain.KindOperator && who.Status == "active" {
			ops = append(ops, id)
		}
	}

	return ops, nil
}

// targets records the state that containment leaves in the target services.
// NOTE: it replaces codesec, sandbox-runner, keyvault, policy and the
// identity registry in these tests, so they check the incident logic only.
type targets struct {
	mu          sync.Mutex
	suspended   map[string]bool
	keyAccess   map[string]bool // true: key access suspended
	rateLimited map[string]bool
	revoked     map[string]bool
	killed      map[string]int
	disabled    map[string]bool
	quarantined map[string]bool
	alerts      []string
	calls       map[string]int
	failing     map[string]error
}

func newTargets() *targets {
	return &targets{
		suspended: map[string]bool{}, keyAccess: map[string]bool{},
		rateLimited: map[string]bool{}, revoked: map[string]bool{}, killed: map[string]int{},
		disabled: map[string]bool{}, quarantined: map[string]bool{}, calls: map[string]int{},
		failing: map[string]error{},
	}
}

func (t *targets) fail(method string, err error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if err == nil {
		delete(t.failing, method)
	} else {
		t.failing[method] = err
	}
}

func (t *targets) set(method string, m map[string]bool, key string, v bool) (string, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.calls[method]++
	if err := t.failing[method]; err != nil {
		return "", err
	}
	if m[key] == v {
		return fmt.Sprintf("%s already %v", key, v), nil
	}
	m[key] = v

	return fmt.Sprintf("%s set %v", key, v), nil
}

func (t *targets) count(method string) int {
	t.mu.Lock()
	defer t.mu.Unlock()

	return t.calls[method]
}

func (t *targets) is(m map[string]bool, key string) bool {
	t.mu.Lock()
	defer t.mu.Unlock()

	return m[key]
}

func (t *targets) SuspendIdentity(_ context.Context, r app.ActionRequest) (string, error) {
	return t.set("SuspendIdentity", t.suspended, r.Target, true)
}

func (t *targets) UnsuspendIdentity(_ context.Context, r app.ActionRequest) (string, error) {
	return t.set("UnsuspendIdentity", t.suspended, r.Target, false)
}

func (t *targets) SuspendKeyAccess(_ context.Context, r app.ActionRequest) (string, error) {
	return t.set("SuspendKeyAccess", t.keyAccess, r.Target, true)
}

func (t *targets) RestoreKeyAccess(_ context.Context, r app.ActionRequest) (string, error) {
	return t.set("RestoreKeyAccess", t.keyAccess, r.Target, false)
}

func (t *targets) TightenRateLimit(_ context.Context, r app.ActionRequest) (string, error) {
	return t.set("TightenRateLimit", t.rateLimited, r.Target, true)
}

func (t *targets) RestoreRateLimit(_ context.Context, r app.ActionRequest) (string, error) {
	return t.set("RestoreRateLimit", t.rateLimited, r.Target, false)
}

func (t *targets) RevokeBundle(_ context.Context, r app.ActionRequest) (string, error) {
	return t.set("RevokeBundle", t.revoked, r.Target, true)
}

func (t *targets) KillSandboxes(_ context.Context, r app.ActionRequest) (string, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.calls["KillSandboxes"]++
	if err := t.failing["KillSandboxes"]; err != nil {
		return "", err
	}
	t.killed[r.Target]++

	return "killed 1 sandbox", nil
}

func (t *targets) DisableKeyVersion(_ context.Context, r app.ActionRequest) (string, error) {
	return t.set("DisableKeyVersion", t.disabled, r.Target, true)
}

func (t *targets) Quarantine(_ context.Context, r app.ActionRequest) (string, error) {
	return t.set("Quarantine", t.quarantined, r.Target, true)
}

func (t *targets) ReleaseQuarantine(_ context.Context, r app.ActionRequest) (string, error) {
	return t.set("ReleaseQuarantine", t.quarantined, r.Target, false)
}

func (t *targets) Alert(_ context.Context, r app.ActionRequest) (string, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.calls["Alert"]++
	t.alerts = append(t.alerts, r.IncidentID)

	return "operators alerted", nil
}

// env is one incident service on a real embedded NATS server.
type env struct {
	t       *testing.T
	srv     *server.Server
	js      jetstream.JetStream
	clock   *clock
	dir     *directory
	targets *targets
	policy  app.Policy
	store   *kvstore.Store
	svc     *app.Service
	logs    *logBuffer
}

// logBuffer collects the service's log lines; it is safe for concurrent use.
type logBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()

	return l.b.Write(p)
}

// count returns how many lines contain msg.
func (l *logBuffer) count(msg string) int {
	l.mu.Lock()
	defer l.mu.Unlock()

	return strings.Count(l.b.String(), msg)
}

func defaultPolicy() app.Policy {
	auto := func(k domain.ActionKind, expiry time.Duration) domain.ActionRule {
		return domain.ActionRule{Kind: k, Mode: domain.ModeAuto, Expiry: expiry}
	}

	return app.Policy{
		Playbooks: map[domain.Type][]domain.ActionRule{
			domain.UnauthorizedAccess: {auto(domain.ActSuspendIdentity, time.Hour)},
			domain.APIAbuse: {auto(domain.ActSuspendKeyAccess, time.Hour),
				auto(domain.ActTightenRateLimit, time.Hour)},
			domain.CodeInjection: {auto(domain.ActRevokeBundle, 0),
				auto(domain.ActKillSandboxes, 0)},
			domain.DataBreach: {auto(domain.ActDisableKeyVersion, 0),
				auto(domain.ActSuspendIdentity, 0)},
			domain.SystemCompromise: {auto(domain.ActQuarantineIdentity, 0),
				auto(domain.ActAlert, 0)},
		},
		Escalation:   domain.Escalation{Factor: 2, MaxExpiry: 24 * time.Hour, PermanentFrom: 4},
		MaxAttempts:  3,
		WindowBefore: 10 * time.Minute, WindowAfter: 10 * time.Minute,
	}
}

func newEnv(t *testing.T) *env {
	t.Helper()
	e := &env{
		t: t, srv: testkit.NATSServer(t), dir: newDirectory(), targets: newTargets(),
		clock: &clock{now: time.Now().UTC().Truncate(time.Millisecond)}, policy: defaultPolicy(),
		logs: &logBuffer{},
	}
	e.start()

	return e
}

// start builds the service on e.srv, as a restarted process would.
func (e *env) start() {
	e.t.Helper()
	ctx := context.Background()
	e.js = testkit.JetStream(e.t, e.srv)
	if _, err := events.EnsureStream(ctx, e.js, events.StreamOptions{}); err != nil {
		e.t.Fatalf("creating events stream: %v", err)
	}
	store, err := kvstore.Open(ctx, e.js, kvstore.Bucket, 1)
	if err != nil {
		e.t.Fatalf("opening store: %v", err)
	}
	e.store = store
	log := slog.New(slog.NewTextHandler(e.logs, nil))
	pub := events.NewPublisher(jsSink{e.js}, "incident", events.PublisherOptions{})
	e.t.Cleanup(func() { _ = pub.Close(context.Background()) })
	e.svc = app.New(app.Deps{
		Store: store, Containment: e.targets, Directory: e.dir, Auditor: pub,
		Events: eventsource.New(e.js, events.StreamName, eventsource.DecodeJSON, log),
		Log:    log, Now: e.clock.Now,
	}, e.policy)
}

func (e *env) threat(id string, typ domain.Type, identity string, res ...domain.Resource,
) *domain.Threat {
	now := e.clock.Now()

	return &domain.Threat{
		ID: id, Type: string(typ), Severity: domain.SeverityHigh, Identity: identity,
		Resources: res, RuleID: "rule-" + typ.SubjectToken(), Evidence: []string{id + "-ev1"},
		FirstSeen: now.Add(-time.Minute), LastSeen: now, Count: 1,
	}
}

func (e *env) handle(th *domain.Threat) *domain.Incident {
	e.t.Helper()
	id, err := e.svc.HandleThreat(context.Background(), th)
	if err != nil {
		e.t.Fatalf("HandleThreat(%s): %v", th.ID, err)
	}

	return e.get(id)
}

func (e *env) get(id string) *domain.Incident {
	e.t.Helper()
	inc, err := e.svc.Get(context.Background(), id)
	if err != nil {
		e.t.Fatalf("Get(%s): %v", id, err)
	}

	return inc
}

func (e *env) update(actor, id string, verb app.Verb, actionID string) (*domain.Incident, error) {
	return e.svc.Update(context.Background(), actor, app.UpdateRequest{
		ID: id, Verb: verb, Reason: "test " + string(verb), ActionID: actionID,
	})
}

// auditEvents returns the incident events stored in NODEX_EVENTS.
func (e *env) auditEvents(incidentID string) []events.SecurityEvent {
	e.t.Helper()
	ctx := context.Background()
	cons, err := e.js.OrderedConsumer(ctx, events.StreamName, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{"nodex.v1.events.incident.>"},
	})
	if err != nil {
		e.t.Fatalf("reading events: %v", err)
	}
	var out []events.SecurityEvent
	for {
		batch, err := cons.FetchNoWait(500)
		if err != nil {
			e.t.Fatalf("fetching events: %v", err)
		}
		n := 0
		for msg := range batch.Messages() {
			n++
			var ev events.SecurityEvent
			if err := json.Unmarshal(msg.Data(), &ev); err != nil {
				e.t.Fatalf("decoding event: %v", err)
			}
			if ev.Metadata["incident_id"] == incidentID {
				out = append(out, ev)
			}
		}
		if err := batch.Error(); err != nil && !errors.Is(err, jetstream.ErrNoMessages) {
			e.t.Fatalf("fetching events: %v", err)
		}
		if n == 0 {
			return out
		}
	}
}

func actionStatuses(inc *domain.Incident) []string {
	var out []string
	for _, a := range inc.Actions {
		out = append(out, string(a.Kind)+":"+a.Target+"="+string(a.Status))
	}
	slices.Sort(out)

	return out
}
