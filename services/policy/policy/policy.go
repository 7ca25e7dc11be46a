// Package policy runs the NodeX policy service. The service stores the
// policy set and role data in the NODEX_POLICY bucket, seeding the defaults
// on first start. It decides remote requests on nodex.v1.policy.decide with
// the engine that libs/authz embeds in every service, and it edits roles and
// policy sets at run time. Its own main and `nodex dev` both call [Run].
package policy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/nodexsec/nodex/libs/authz"
	"github.com/nodexsec/nodex/libs/bus"
	"github.com/nodexsec/nodex/libs/envelope"
	"github.com/nodexsec/nodex/libs/events"
	"github.com/nodexsec/nodex/services/policy/internal/app"
	"github.com/nodexsec/nodex/services/policy/internal/config"
	"github.com/nodexsec/nodex/services/policy/internal/kvstore"
	"github.com/nodexsec/nodex/services/policy/internal/ports"
	"github.com/nodexsec/nodex/services/policy/policies"
)

// Config is the policy service's configuration; the zero value takes every
// default.
type Config = config.Config

// Subjects the service serves, for clients such as the nodex program.
const (
	SubjectDecide   = ports.SubjectDecide
	SubjectRoleAdd  = ports.SubjectRoleAdd
	SubjectRoleBind = ports.SubjectRoleBind
	SubjectPush     = ports.SubjectPush
	SubjectTest     = ports.SubjectTest
	SubjectRestrict = ports.SubjectRestrict
)

// Request and reply bodies, for clients such as the nodex program. A decide
// request is an [authz.Input] and its reply an [authz.Decision].
type (
	RoleAddRequest  = app.RoleAddRequest
	RoleAddReply    = app.RoleAddReply
	RoleBindRequest = app.RoleBindRequest
	RoleBindReply   = app.RoleBindReply
	PushRequest     = app.PushRequest
	PushReply       = app.PushReply
	TestReply       = app.TestReply
	RestrictRequest = app.RestrictRequest
	RestrictReply   = app.RestrictReply
)

// Deps are the collaborators of [Run]. Client, Events and Log are required.
type Deps struct {
	// Client is the bus client of the policy service's identity (role
	// service:policy). Run drains it before returning but never closes its
	// connection.
	Client *bus.Client
	// Events publishes the audit event of every decision and every
	// restriction request.
	Events *events.Publisher
	// Log is the service's logger.
	Log *slog.Logger
	// Config tunes the service.
	Config Config
	// Ready, if set, is called once the service serves its subjects.
	Ready func()
	// Signer, if set, signs every value the service stores in the policy
	// bucket; identity.Keyring of the policy identity implements it.
	Signer authz.Signer
	// Directory, if set, is the verified registry view that the service
	// checks every value it reads from the policy bucket against, such as
	// identity.Directory. Set Signer and Directory together, and give every
	// other service's authz.WatchKV a Verifier on the same view.
	Directory envelope.Directory
}

// Run seeds the policy bucket if it is empty, loads the active policy set,
// serves the policy subjects and blocks until ctx ends. It then drains the
// bus client and returns nil, or it returns the error that stopped it earlier.
func Run(ctx context.Context, deps Deps) error {
	if deps.Client == nil || deps.Events == nil || deps.Log == nil {
		return errors.New("policy: Run needs Client, Events and Log")
	}
	cfg := deps.Config.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return err
	}
	log := deps.Log.With("service", "policy")
	log.InfoContext(ctx, "policy service starting", "queue_group", cfg.QueueGroup,
		"decide_timeout", cfg.DecideTimeout, "max_policy_bytes", cfg.MaxPolicyBytes)

	if (deps.Signer == nil) != (deps.Directory == nil) {
		return errors.New("policy: set both Signer and Directory, or neither")
	}
	if deps.Signer == nil {
		// Any writer of the bucket then controls the policy.
		log.WarnContext(ctx, "policy bucket values not signed or verified")
	}
	storeOpts, watchVerifier := kvstore.Options{}, (*authz.Verifier)(nil)
	if deps.Directory != nil {
		storeOpts = kvstore.Options{Signer: deps.Signer,
			Verifier: &authz.Verifier{Directory: deps.Directory}}
		watchVerifier = &authz.Verifier{Directory: deps.Directory}
	}

	store, err := kvstore.Open(ctx, deps.Client.JetStream(), cfg.BucketHistory, storeOpts)
	if err != nil {
		return err
	}
	if err := seed(ctx, store, log); err != nil {
		return err
	}

	engine := authz.New(authz.Options{Timeout: cfg.DecideTimeout,
		Audit: auditSink{pub: deps.Events}})
	watcher, err := authz.WatchKV(ctx, store.KV(), engine, authz.WatchOptions{
		Verifier: watchVerifier,
		OnLoad:   func(rev string) { log.Info("policy set loaded", "revision", rev) },
		OnError: func(err error) {
			log.Error("policy set rejected, previous set stays active",
				"active", engine.Revision(), "error", err)
		},
	})
	if err != nil {
		return err
	}
	defer watcher.Stop()

	svc := app.New(app.Deps{
		Engine: engine, Store: store, Log: log,
		TestTimeout: cfg.TestTimeout, MaxPolicyBytes: cfg.MaxPolicyBytes,
		ActivationWait: cfg.ActivationWait, Events: deps.Events,
	})
	if err := ports.Register(deps.Client, cfg.QueueGroup, svc); err != nil {
		return err
	}
	log.InfoContext(ctx, "policy service ready", "revision", engine.Revision())
	if deps.Ready != nil {
		deps.Ready()
	}

	<-ctx.Done()
	return drain(deps.Client, log)
}

func seed(ctx context.Context, store *kvstore.Store, log *slog.Logger) error {
	set, rbac, err := DefaultSet()
	if err != nil {
		return err
	}

	createdPolicy, createdRBAC, err := store.Seed(ctx, set, rbac)
	if err != nil {
		return fmt.Errorf("seeding default policies: %w", err)
	}
	if createdPolicy || createdRBAC {
		log.InfoContext(ctx, "default policies stored", "policy", createdPolicy,
			"roles", createdRBAC)
	}

	return nil
}

func drain(c *bus.Client, log *slog.Logger) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	if err := c.Drain(ctx); err != nil {
		log.Warn("draining bus client", "error", err)
		return fmt.Errorf("draining bus client: %w", err)
	}
	log.Info("policy service stopped")

	return nil
}

// DefaultSet returns the embedded default policy set (Rego modules, tests
// included, without role data) and the default roles.
func DefaultSet() (authz.PolicySet, authz.RBAC, error) {
	modules, err := policies.Modules()
	if err != nil {
		return authz.PolicySet{}, authz.RBAC{}, err
	}
	rbac, err := policies.RBAC()
	if err != nil {
		return authz.PolicySet{}, authz.RBAC{}, err
	}

	return authz.PolicySet{Revision: "default", Modules: modules}, rbac, nil
}

// RemoteDecisionEventType is the event type of decisions made for
// nodex.v1.policy.decide callers. They are not authorization checks of the
// input's subject, so they do not count as that subject's denials.
const RemoteDecisionEventType = "policy.remote_decision"

// auditSink publishes authz.decision events, except that a decision made for
// a remote caller becomes a [RemoteDecisionEventType] event naming the
// caller. Otherwise any holder of policy/decide could make an identity look
// like it is probing for access, by asking about it until a threshold rule
// raises a threat against it.
type auditSink struct {
	pub *events.Publisher
}

var _ authz.AuditSink = auditSink{}

// Record implements [authz.AuditSink].
func (s auditSink) Record(ctx context.Context, in *authz.Input, d *authz.Decision) {
	ev := authz.DecisionEvent(in, d)
	if caller, ok := app.RemoteCaller(ctx); ok {
		ev.Type = RemoteDecisionEventType
		ev.Metadata["requested_by"] = caller
		// The subject of a dry run did not act, so it is not the event's
		// subject either.
		ev.Metadata["input_subject"] = ev.Subject
		ev.Subject = caller
	}
	s.pub.Publish(ctx, ev)
}
