package incident_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/nodexsec/nodex/libs/authz"
	"github.com/nodexsec/nodex/libs/bus"
	"github.com/nodexsec/nodex/libs/envelope"
	"github.com/nodexsec/nodex/libs/errs"
	"github.com/nodexsec/nodex/libs/events"
	"github.com/nodexsec/nodex/libs/identity"
	"github.com/nodexsec/nodex/libs/testkit"
	"github.com/nodexsec/nodex/services/incident/incident"
	"github.com/nodexsec/nodex/services/incident/internal/domain"
)

// operatorPolicy lets operators, and only them, read and change incidents.
const operatorPolicy = `package nodex.authz

default decision := {"allow": false, "reasons": ["only operators handle incidents"]}

decision := {"allow": true, "reasons": ["operator"]} if {
	"operator" in input.subject.roles
	input.resource.type == "incident"
}
`

// stack is the incident service on a real embedded server with the real
// identity registry, envelopes, policy engine and events stream.
type stack struct {
	t      *testing.T
	srv    *server.Server
	js     jetstream.JetStream
	setup  *identity.Setup
	view   *identity.View
	admin  *identity.Admin
	wraps  *bus.WrapStore
	cancel context.CancelFunc
	done   chan error
}

func newStack(t *testing.T) *stack {
	t.Helper()
	ctx := context.Background()
	s := &stack{t: t, srv: testkit.NATSServer(t)}
	s.js = testkit.JetStream(t, s.srv)
	var err error
	if s.setup, err = identity.Bootstrap(t.TempDir()); err != nil {
		t.Fatalf("bootstrapping identities: %v", err)
	}
	kv, err := identity.EnsureBucket(ctx, s.js)
	if err != nil {
		t.Fatalf("creating registry bucket: %v", err)
	}
	if err := s.setup.Publish(ctx, kv); err != nil {
		t.Fatalf("publishing registry: %v", err)
	}
	s.admin = identity.NewAdmin(kv, s.setup.Root)
	authority := identity.NewAuthorityWriter(kv, s.setup.Authority)
	hbCtx, hbCancel := context.WithCancel(ctx)
	t.Cleanup(hbCancel)
	go authority.RunHeartbeat(hbCtx, time.Second, nil)
	s.view, err = identity.Watch(ctx, kv, s.setup.Root.Public(), identity.ViewOptions{})
	if err != nil {
		t.Fatalf("watching registry: %v", err)
	}
	t.Cleanup(s.view.Close)
	s.startEpoch("service:incident", "incident")
	s.startEpoch(events.AudienceRole, "incident")
	if s.wraps, err = bus.NewWrapStore(ctx, s.js, 0); err != nil {
		t.Fatalf("creating wrap store: %v", err)
	}
	if _, err := events.EnsureStream(ctx, s.js, events.StreamOptions{}); err != nil {
		t.Fatalf("creating events stream: %v", err)
	}
	s.run(authority)

	return s
}

func (s *stack) startEpoch(role string, members ...string) {
	s.t.Helper()
	ctx := context.Background()
	var ids []*identity.Identity
	for _, m := range members {
		ident, err := s.admin.Get(ctx, m)
		if err != nil {
			s.t.Fatalf("reading identity %s: %v", m, err)
		}
		ids = append(ids, ident)
	}
	if _, err := s.admin.StartRoleEpoch(ctx, role, s.setup.Creds[identity.OperatorID],
		ids); err != nil {
		s.t.Fatalf("starting epoch of %s: %v", role, err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		if epoch, err := s.view.Role(role); err == nil && epoch != nil {
			return
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("role %s not visible in the registry view", role)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// client connects identity id to the server with its own codec.
func (s *stack) client(id string) *bus.Client {
	s.t.Helper()
	codec, err := envelope.New(envelope.Config{
		Keys:      &identity.Keyring{Creds: s.setup.Creds[id], View: s.view},
		Directory: &identity.Directory{View: s.view}, Wraps: s.wraps,
	})
	if err != nil {
		s.t.Fatalf("creating codec for %s: %v", id, err)
	}
	c, err := bus.New(bus.Config{Conn: testkit.Connect(s.t, s.srv), Codec: codec,
		RequestTimeout: 3 * time.Second})
	if err != nil {
		s.t.Fatalf("creating bus client for %s: %v", id, err)
	}
	s.t.Cleanup(func() { _ = c.Drain(context.Background()) })

	return c
}

func (s *stack) run(authority *identity.AuthorityWriter) {
	s.t.Helper()
	engine := authz.New(authz.Options{})
	err := engine.Load(context.Background(), authz.PolicySet{
		Revision: "test", Modules: map[string]string{"incident.rego": operatorPolicy},
	})
	if err != nil {
		s.t.Fatalf("loading policy: %v", err)
	}
	c := s.client("incident")
	pub := events.NewPublisher(c, "incident", events.PublisherOptions{})
	ctx, cancel := context.WithCancel(context.Background())
	s.cancel, s.done = cancel, make(chan error, 1)
	go func() {
		s.done <- incident.Run(ctx, incident.Deps{
			Client: c, Audit: pub, Authorizer: engine, Registry: s.view,
			Authority: authority, Admin: s.admin,
			Log: slog.New(slog.NewTextHandler(io.Discard, nil)),
		})
	}()
	s.t.Cleanup(s.stop)
	s.eventually("consumer bound", func() bool {
		_, err := s.js.Consumer(context.Background(), "NODEX_THREATS", "incident-threats")
		return err == nil
	})
}

func (s *stack) stop() {
	if s.cancel == nil {
		return
	}
	s.cancel()
	s.cancel = nil
	if err := <-s.done; err != nil {
		s.t.Errorf("Run: %v", err)
	}
}

func (s *stack) eventually(what string, cond func() bool) {
	s.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			s.t.Fatalf("%s: not true after 10s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func threat(id, identityID string) domain.Threat {
	now := time.Now().UTC()

	return domain.Threat{
		ID: id, Revision: 1, Type: string(domain.UnauthorizedAccess),
		Severity: domain.SeverityHigh, Identity: identityID, Origin: "127.0.0.1:1",
		RuleID: "authz-denied-burst", Evidence: []string{"ev-1"},
		FirstSeen: now.Add(-time.Minute), LastSeen: now, Count: 5,
	}
}

func (s *stack) list(c *bus.Client) ([]domain.Summary, error) {
	var reply incident.ListReply
	err := c.Request(context.Background(), incident.SubjectList, incident.Role,
		incident.ListRequest{}, &reply)

	return reply.Incidents, err
}

func TestRunContainsThreatAndSuspensionHolds(t *testing.T) {
	s := newStack(t)
	ctx := context.Background()
	monitor := s.client("monitor")
	operator := s.client(identity.OperatorID)
	agent := s.client(identity.DemoAgentID)

	if _, err := s.list(agent); !errors.Is(err, errs.AccessDenied) {
		t.Fatalf("agent listing incidents: err = %v, want access denied", err)
	}
	th := threat("thr_1", identity.DemoAgentID)
	if err := monitor.Publish(ctx, "nodex.v1.threats.unauthorized_access", events.AudienceRole,
		th); err != nil {
		t.Fatalf("publishing threat: %v", err)
	}
	var id string
	s.eventually("incident contained", func() bool {
		list, err := s.list(operator)
		if err != nil || len(list) != 1 {
			return false
		}
		id = list[0].ID

		return list[0].State == domain.StateContained
	})
	ident, err := s.view.Identity(identity.DemoAgentID)
	if err != nil {
		t.Fatal(err)
	}
	if ident.Status != identity.StatusSuspended {
		t.Fatalf("agent status = %s, want suspended", ident.Status)
	}
	// The suspended agent's request is rejected by the service's envelope
	// checks, so no reply comes back.
	if _, err := s.list(agent); err == nil || errors.Is(err, errs.AccessDenied) {
		t.Errorf("suspended agent got a reply: err = %v", err)
	}

	var upd incident.GetReply
	err = operator.Request(ctx, incident.SubjectUpdate, incident.Role, incident.UpdateRequest{
		ID: id, Verb: "close", Reason: "skip ahead"}, &upd)
	if !errors.Is(err, errs.IllegalTransition) {
		t.Errorf("close of a contained incident: err = %v, want illegal transition", err)
	}
	kvPub := events.NewPublisher(s.client("keyvault"), "keyvault", events.PublisherOptions{})
	err = kvPub.PublishSync(ctx, events.SecurityEvent{Type: "keyvault.retrieve",
		Subject: identity.DemoAgentID, Status: events.StatusFailure,
		Severity: events.SeverityMedium})
	if err != nil {
		t.Fatalf("publishing a keyvault event: %v", err)
	}
	err = operator.Request(ctx, incident.SubjectUpdate, incident.Role, incident.UpdateRequest{
		ID: id, Verb: "ack", Reason: "taking it"}, &upd)
	if err != nil {
		t.Fatalf("ack: %v", err)
	}
	gathered := false
	for _, row := range upd.Incident.Timeline {
		gathered = gathered || (row.Type == "keyvault.retrieve" && row.Source == "keyvault")
	}
	if !gathered {
		t.Errorf("timeline %+v lacks the sealed keyvault event", upd.Incident.Timeline)
	}
	err = operator.Request(ctx, incident.SubjectUpdate, incident.Role, incident.UpdateRequest{
		ID: id, Verb: "lift", ActionID: "a1", Reason: "false positive"}, &upd)
	if err != nil {
		t.Fatalf("lift: %v", err)
	}
	s.eventually("agent active again", func() bool {
		ident, err := s.view.Identity(identity.DemoAgentID)
		return err == nil && ident.Status == identity.StatusActive
	})
	var rep incident.ReportReply
	err = operator.Request(ctx, incident.SubjectReport, incident.Role, incident.GetRequest{ID: id}, &rep)
	if err != nil {
		t.Fatalf("report: %v", err)
	}
	if rep.Report.Summary.ID != id || len(rep.Report.Actions) != 1 || rep.Markdown == "" {
		t.Errorf("report = %+v, want the incident with one action and markdown", rep.Report.Summary)
	}
}

func TestRunRejectsThreatFromNonMonitor(t *testing.T) {
	s := newStack(t)
	ctx := context.Background()
	codesec := s.client("codesec")
	operator := s.client(identity.OperatorID)
	if err := codesec.Publish(ctx, "nodex.v1.threats.unauthorized_access", events.AudienceRole,
		threat("thr_forged", identity.OperatorID)); err != nil {
		t.Fatalf("publishing threat: %v", err)
	}
	s.eventually("threat terminated", func() bool {
		cons, err := s.js.Consumer(ctx, "NODEX_THREATS", "incident-threats")
		if err != nil {
			return false
		}
		info, err := cons.Info(ctx)

		return err == nil && info.AckFloor.Stream >= 1
	})
	list, err := s.list(operator)
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 0 {
		t.Errorf("incidents = %d, want none from a threat codesec sent", len(list))
	}
	ident, err := s.view.Identity(identity.OperatorID)
	if err != nil {
		t.Fatal(err)
	}
	if ident.Status != identity.StatusActive {
		t.Errorf("operator status = %s after a forged threat", ident.Status)
	}
}

func TestRunRejectsTypeSubjectMismatch(t *testing.T) {
	s := newStack(t)
	ctx := context.Background()
	monitor := s.client("monitor")
	operator := s.client(identity.OperatorID)
	th := threat("thr_mismatch", identity.DemoAgentID)
	if err := monitor.Publish(ctx, "nodex.v1.threats.api_abuse", events.AudienceRole,
		th); err != nil {
		t.Fatalf("publishing threat: %v", err)
	}
	s.eventually("threat settled", func() bool {
		cons, err := s.js.Consumer(ctx, "NODEX_THREATS", "incident-threats")
		if err != nil {
			return false
		}
		info, err := cons.Info(ctx)

		return err == nil && info.AckFloor.Stream >= 1
	})
	list, err := s.list(operator)
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 0 {
		t.Errorf("incidents = %d, want none for a type that differs from its subject",
			len(list))
	}
}
