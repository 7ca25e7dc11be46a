package containment_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/nodexsec/nodex/libs/events"
	"github.com/nodexsec/nodex/libs/identity"
	"github.com/nodexsec/nodex/libs/testkit"
	"github.com/nodexsec/nodex/services/incident/internal/adapters/containment"
	"github.com/nodexsec/nodex/services/incident/internal/app"
)

// requester records requests and fails the subjects listed in down, as a
// target service that is not running would.
type requester struct {
	subjects []string
	down     map[string]bool
}

func (r *requester) Request(_ context.Context, subject, _ string, _, _ any) error {
	r.subjects = append(r.subjects, subject)
	if r.down[subject] {
		return errors.New("no responders")
	}

	return nil
}

// alerts keeps the events it is given.
type alerts struct{ got []events.SecurityEvent }

func (a *alerts) PublishSync(_ context.Context, ev events.SecurityEvent) error {
	a.got = append(a.got, ev)

	return nil
}

type registry struct {
	view  *identity.View
	admin *identity.Admin
	auth  *identity.AuthorityWriter
}

func newRegistry(t *testing.T) *registry {
	t.Helper()
	ctx := context.Background()
	js := testkit.JetStream(t, testkit.NATSServer(t))
	setup, err := identity.Bootstrap(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	kv, err := identity.EnsureBucket(ctx, js)
	if err != nil {
		t.Fatal(err)
	}
	if err := setup.Publish(ctx, kv); err != nil {
		t.Fatal(err)
	}
	view, err := identity.Watch(ctx, kv, setup.Root.Public(), identity.ViewOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(view.Close)

	return &registry{view: view, admin: identity.NewAdmin(kv, setup.Root),
		auth: identity.NewAuthorityWriter(kv, setup.Authority)}
}

func (r *registry) waitStatus(t *testing.T, id string, want identity.Status) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		ident, err := r.view.Identity(id)
		if err == nil && ident.Status == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("identity %s: status not %s after 5s (err %v)", id, want, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestSuspendAndLiftIdentity(t *testing.T) {
	r := newRegistry(t)
	ctx := context.Background()
	b := containment.New(&requester{}, r.auth, r.view, &alerts{})
	req := app.ActionRequest{IncidentID: "inc-1", Target: identity.DemoAgentID, Reason: "test"}

	if _, err := b.SuspendIdentity(ctx, req); err != nil {
		t.Fatalf("suspend: %v", err)
	}
	r.waitStatus(t, identity.DemoAgentID, identity.StatusSuspended)
	res, err := b.SuspendIdentity(ctx, req)
	if err != nil || !strings.Contains(res, "already suspended") {
		t.Errorf("second suspend = %q, %v; want already suspended", res, err)
	}
	if _, err := b.UnsuspendIdentity(ctx, req); !errors.Is(err, containment.ErrNeedsRootKey) {
		t.Errorf("unsuspend without root key: err = %v, want ErrNeedsRootKey", err)
	}
	b.Upgrade = r.admin
	if _, err := b.UnsuspendIdentity(ctx, req); err != nil {
		t.Fatalf("unsuspend: %v", err)
	}
	r.waitStatus(t, identity.DemoAgentID, identity.StatusActive)
}

func TestSuspendKeepsRevokedIdentity(t *testing.T) {
	r := newRegistry(t)
	ctx := context.Background()
	if err := r.admin.Revoke(ctx, identity.DemoAgentID); err != nil {
		t.Fatal(err)
	}
	r.waitStatus(t, identity.DemoAgentID, identity.StatusRevoked)
	b := containment.New(&requester{}, r.auth, r.view, &alerts{})
	req := app.ActionRequest{Target: identity.DemoAgentID, Reason: "test"}
	if _, err := b.SuspendIdentity(ctx, req); err != nil {
		t.Fatalf("suspend: %v", err)
	}
	time.Sleep(100 * time.Millisecond)
	r.waitStatus(t, identity.DemoAgentID, identity.StatusRevoked)
}

func TestQuarantineReportsEachFailure(t *testing.T) {
	r := newRegistry(t)
	ctx := context.Background()
	rq := &requester{down: map[string]bool{containment.SubjectKillSandboxes: true}}
	b := containment.New(rq, r.auth, r.view, &alerts{})
	req := app.ActionRequest{IncidentID: "inc-1", Target: identity.DemoAgentID, Reason: "test"}

	res, err := b.Quarantine(ctx, req)
	if err == nil || !strings.Contains(err.Error(), "killing sandboxes") {
		t.Fatalf("quarantine err = %v, want the sandbox failure", err)
	}
	if !strings.Contains(res, "suspended") {
		t.Errorf("result %q lacks the steps that succeeded", res)
	}
	r.waitStatus(t, identity.DemoAgentID, identity.StatusSuspended)
	want := []string{containment.SubjectRestrict, containment.SubjectKillSandboxes}
	if strings.Join(rq.subjects, ",") != strings.Join(want, ",") {
		t.Errorf("requests = %v, want %v", rq.subjects, want)
	}
}

func TestDisableKeyParsesTarget(t *testing.T) {
	tests := []struct {
		target  string
		name    string
		version int
		wantErr bool
	}{
		{"openai-prod", "openai-prod", 0, false},
		{"openai-prod/3", "openai-prod", 3, false},
		{"openai-prod/x", "", 0, true},
		{"openai-prod/0", "", 0, true},
	}
	for _, tt := range tests {
		name, version, err := containment.ParseKeyTarget(tt.target)
		if (err != nil) != tt.wantErr || name != tt.name || version != tt.version {
			t.Errorf("ParseKeyTarget(%q) = %q, %d, %v", tt.target, name, version, err)
		}
	}
}

func TestAlertPublishesCriticalEvent(t *testing.T) {
	r := newRegistry(t)
	a := &alerts{}
	b := containment.New(&requester{}, r.auth, r.view, a)
	_, err := b.Alert(context.Background(), app.ActionRequest{IncidentID: "inc-1",
		Target: "inc-1", Identity: identity.DemoAgentID, Reason: "test"})
	if err != nil {
		t.Fatal(err)
	}
	if len(a.got) != 1 || a.got[0].Severity != events.SeverityCritical ||
		a.got[0].Metadata["identity"] != identity.DemoAgentID {
		t.Errorf("alerts = %+v, want one critical event naming the identity", a.got)
	}
}
