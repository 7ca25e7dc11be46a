package policy_test

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/nodexsec/nodex/libs/authz"
	"github.com/nodexsec/nodex/libs/errs"
	"github.com/nodexsec/nodex/libs/events"
	"github.com/nodexsec/nodex/libs/testkit"
	"github.com/nodexsec/nodex/services/policy/policy"
)

// retrieveOpenAI is agent-1 asking for an openai key with a key-reader role.
func retrieveOpenAI() authz.Input {
	return authz.Input{
		Subject: authz.Subject{ID: "agent-1", Kind: authz.KindAgent,
			Roles: []string{"key-reader:openai"}, Status: authz.StatusActive},
		Action:   "retrieve",
		Resource: authz.Resource{Type: "key", ID: "openai-dev"},
		Context:  authz.Context{Provider: "openai"},
	}
}

func restrict(t *testing.T, w *world, req policy.RestrictRequest) policy.RestrictReply {
	t.Helper()

	var reply policy.RestrictReply
	if err := w.operator.Request(context.Background(), policy.SubjectRestrict, policyRole,
		req, &reply); err != nil {
		t.Fatalf("restrict %+v: %v", req, err)
	}

	return reply
}

// countEvents returns how many policy events of type typ the stream holds.
func countEvents(t *testing.T, w *world, typ string) uint64 {
	t.Helper()
	ctx := context.Background()

	subject, err := events.Subject("policy", typ)
	if err != nil {
		t.Fatal(err)
	}
	stream, err := testkit.JetStream(t, w.srv).Stream(ctx, events.StreamName)
	if err != nil {
		t.Fatalf("opening event stream: %v", err)
	}
	info, err := stream.Info(ctx, jetstream.WithSubjectFilter(subject))
	if err != nil {
		t.Fatalf("reading event stream info: %v", err)
	}
	var n uint64
	for _, c := range info.State.Subjects {
		n += c
	}

	return n
}

func TestRestrictKeyAccessSetAndLift(t *testing.T) {
	w := start(t)
	waitDecision(t, w.local, retrieveOpenAI(), true)

	set := policy.RestrictRequest{Identity: "agent-1", Restriction: authz.RestrictKeyAccess,
		Reason: "api abuse", IncidentID: "inc-1"}
	if got := restrict(t, w, set); !got.Changed || !got.Active {
		t.Errorf("first restrict reply = %+v, want changed and active", got)
	}
	took := waitDecision(t, w.local, retrieveOpenAI(), false)
	t.Logf("restriction reached a watching engine in %s", took)
	d, _ := w.local.Decide(context.Background(), retrieveOpenAI())
	want := `key access of "agent-1" is restricted by incident "inc-1": api abuse`
	if !slices.Contains(d.Reasons, want) {
		t.Errorf("reasons = %q, want %q", d.Reasons, want)
	}

	if got := restrict(t, w, set); got.Changed {
		t.Errorf("repeated restrict reply = %+v, want unchanged", got)
	}

	// A role edit rewrites the role data and must keep the restriction.
	bind := policy.RoleBindRequest{Identity: "agent-2", Role: "agent"}
	var bound policy.RoleBindReply
	err := w.operator.Request(context.Background(), policy.SubjectRoleBind, policyRole,
		bind, &bound)
	if err != nil {
		t.Fatalf("role bind: %v", err)
	}
	waitDecision(t, w.local, authz.Input{
		Subject: authz.Subject{ID: "agent-2", Kind: authz.KindAgent, Status: authz.StatusActive},
		Action:  "submit", Resource: authz.Resource{Type: "code"},
	}, true)
	if d, _ := w.local.Decide(context.Background(), retrieveOpenAI()); d.Allow {
		t.Error("restriction lost after a role bind")
	}

	lift := policy.RestrictRequest{Identity: "agent-1", Restriction: authz.RestrictKeyAccess,
		Lift: true, Reason: "incident closed", IncidentID: "inc-1"}
	if got := restrict(t, w, lift); !got.Changed || got.Active {
		t.Errorf("lift reply = %+v, want changed and inactive", got)
	}
	waitDecision(t, w.local, retrieveOpenAI(), true)
	if got := restrict(t, w, lift); got.Changed {
		t.Errorf("repeated lift reply = %+v, want unchanged", got)
	}

	if n := countEvents(t, w, "policy.restriction_set"); n != 2 {
		t.Errorf("restriction_set events = %d, want 2 (one per request)", n)
	}
	if n := countEvents(t, w, "policy.restriction_lifted"); n != 2 {
		t.Errorf("restriction_lifted events = %d, want 2 (one per request)", n)
	}
}

func TestRestrictRateLimitFlagsRetrieve(t *testing.T) {
	w := start(t)

	restrict(t, w, policy.RestrictRequest{Identity: "agent-1",
		Restriction: authz.RestrictRateLimit, RequestsPerMinute: 6, Reason: "api abuse",
		IncidentID: "inc-2", ExpiresAt: time.Now().Add(time.Hour)})

	deadline := time.Now().Add(10 * time.Second)
	for {
		d, err := w.local.Decide(context.Background(), retrieveOpenAI())
		if err == nil && d.Allow && slices.Contains(d.Flags, "rate_limit_per_minute:6") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("decision = %+v (err %v), want allow with rate_limit_per_minute:6", d, err)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestRestrictExpiredNoLongerApplies(t *testing.T) {
	w := start(t)

	restrict(t, w, policy.RestrictRequest{Identity: "agent-1",
		Restriction: authz.RestrictKeyAccess, Reason: "api abuse", IncidentID: "inc-3",
		ExpiresAt: time.Now().Add(-time.Minute)})
	waitDecision(t, w.local, retrieveOpenAI(), true)
}

func TestRestrictRejectsCallersAndBadInput(t *testing.T) {
	w := start(t)
	ctx := context.Background()
	good := policy.RestrictRequest{Identity: "agent-1", Restriction: authz.RestrictKeyAccess,
		Reason: "api abuse", IncidentID: "inc-1"}

	var reply policy.RestrictReply
	for name, c := range map[string]interface {
		Request(ctx context.Context, subject, toRole string, req, resp any) error
	}{"agent": w.agent, "codesec": w.codesec} {
		err := c.Request(ctx, policy.SubjectRestrict, policyRole, good, &reply)
		if !errors.Is(err, errs.AccessDenied) {
			t.Errorf("%s restricting: err = %v, want access_denied", name, err)
		}
	}

	bad := map[string]policy.RestrictRequest{
		"unknown kind":     {Identity: "agent-1", Restriction: "network", Reason: "r"},
		"path identity":    {Identity: "../agent-1", Restriction: "key_access", Reason: "r"},
		"empty identity":   {Restriction: "key_access", Reason: "r"},
		"missing reason":   {Identity: "agent-1", Restriction: "key_access"},
		"rate without cap": {Identity: "agent-1", Restriction: "rate_limit", Reason: "r"},
		"key access cap":   {Identity: "agent-1", Restriction: "key_access", Reason: "r", RequestsPerMinute: 5},
		"cap over maximum": {Identity: "agent-1", Restriction: "rate_limit", Reason: "r", RequestsPerMinute: 1e6},
	}
	for name, req := range bad {
		err := w.operator.Request(ctx, policy.SubjectRestrict, policyRole, req, &reply)
		if !errors.Is(err, errs.InvalidRequest) {
			t.Errorf("%s: err = %v, want invalid_request", name, err)
		}
	}
}
