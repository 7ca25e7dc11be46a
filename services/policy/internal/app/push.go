package app

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nodexsec/nodex/libs/authz"
	"github.com/nodexsec/nodex/libs/errs"
	"github.com/nodexsec/nodex/services/policy/internal/regotest"
)

// PushRequest is the body of nodex.v1.policy.push and nodex.v1.policy.test:
// a policy set as a directory holds it.
type PushRequest struct {
	// Modules maps a file name to Rego source, *_test.rego files included.
	Modules map[string]string `json:"modules"`
	// Data is the set's data.json document. The tests run against it as
	// given. When the set is activated, nodex.rbac is dropped from it, since
	// the live roles come from role add and role bind.
	Data map[string]any `json:"data,omitempty"`
}

// PushReply is the reply of nodex.v1.policy.push.
type PushReply struct {
	// Revision is the policy key's new bucket revision.
	Revision uint64 `json:"revision"`
	// Active is the engine revision that decides after the push, such as
	// "policy@7/rbac@3".
	Active string           `json:"active"`
	Tests  *regotest.Report `json:"tests"`
}

// TestReply is the reply of nodex.v1.policy.test.
type TestReply struct {
	// OK is true when the set compiles and all its tests pass.
	OK bool `json:"ok"`
	// CompileError is set when the set does not compile.
	CompileError string           `json:"compile_error,omitempty"`
	Tests        *regotest.Report `json:"tests,omitempty"`
}

// Test compiles the set and runs its tests without activating it.
func (s *Service) Test(ctx context.Context, c Caller, req PushRequest) (TestReply, error) {
	if err := s.authorize(ctx, c, "push", ""); err != nil {
		return TestReply{}, err
	}

	rep, err := s.check(ctx, req)
	if errors.Is(err, errPolicyInvalid) {
		return TestReply{CompileError: err.Error()}, nil
	}
	if err != nil {
		return TestReply{}, err
	}

	return TestReply{OK: rep.OK(), Tests: rep}, nil
}

// Push compiles the set against the live role data, runs its tests and, only
// if all pass, stores it as the active set. A rejected set leaves the
// previous one active.
func (s *Service) Push(ctx context.Context, c Caller, req PushRequest) (PushReply, error) {
	if err := s.authorize(ctx, c, "push", ""); err != nil {
		return PushReply{}, err
	}

	rep, err := s.check(ctx, req)
	if err != nil {
		s.log.WarnContext(ctx, "policy push rejected", "identity", c.ID, "error", err)
		return PushReply{}, asPolicyInvalid(err)
	}
	if !rep.OK() {
		s.log.WarnContext(ctx, "policy push rejected", "identity", c.ID,
			"failed_tests", rep.Failed)
		return PushReply{}, errs.PolicyInvalid.Withf("%d of %d tests failed: %s",
			rep.Failed, len(rep.Results), failedNames(rep, 3))
	}

	set := authz.PolicySet{Modules: req.Modules, Data: withoutRBAC(req.Data)}
	rev, err := s.d.Store.PutPolicy(ctx, set)
	if err != nil {
		return PushReply{}, errs.Unavailable.Wrap(fmt.Errorf("storing policy set: %w", err))
	}

	active := s.awaitActive(ctx, rev)
	s.log.InfoContext(ctx, "policy set pushed", "identity", c.ID, "revision", rev,
		"active", active, "tests", len(rep.Results))

	return PushReply{Revision: rev, Active: active, Tests: rep}, nil
}

var errPolicyInvalid = errors.New("policy set invalid")

// check enforces the size limit, compiles the set with the live role data
// exactly as engines will load it, and runs the set's tests with its own data.
func (s *Service) check(ctx context.Context, req PushRequest) (*regotest.Report, error) {
	size, err := setSize(req)
	if err != nil {
		return nil, errs.InvalidRequest.Withf("data is not JSON-encodable: %s", err)
	}
	if size > s.d.MaxPolicyBytes {
		return nil, errs.PayloadTooLarge.Withf("policy set of %d bytes exceeds the limit of %d",
			size, s.d.MaxPolicyBytes)
	}

	live, _, err := s.d.Store.RBAC(ctx)
	if err != nil && !errors.Is(err, ErrNotFound) {
		return nil, errs.Unavailable.Wrap(fmt.Errorf("reading roles: %w", err))
	}
	data, err := authz.WithRBAC(withoutRBAC(req.Data), live)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", errPolicyInvalid, err)
	}
	set := authz.PolicySet{Revision: "candidate", Modules: req.Modules, Data: data}
	if err := authz.Check(ctx, set, ""); err != nil {
		return nil, fmt.Errorf("%w: %w", errPolicyInvalid, err)
	}

	rep, err := regotest.Run(ctx, req.Modules, req.Data, s.d.TestTimeout)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", errPolicyInvalid, err)
	}

	return rep, nil
}

// awaitActive waits until the engine decides with policy revision rev, up to
// ActivationWait, and returns the engine's revision then.
func (s *Service) awaitActive(ctx context.Context, rev uint64) string {
	prefix := fmt.Sprintf("policy@%d", rev)
	deadline := time.Now().Add(s.d.ActivationWait)
	for {
		active := s.d.Engine.Revision()
		if active == prefix || strings.HasPrefix(active, prefix+"/") {
			return active
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			s.log.WarnContext(ctx, "pushed policy set not active yet", "revision", rev,
				"active", active)
			return active
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func asPolicyInvalid(err error) error {
	var coded *errs.Error
	if errors.As(err, &coded) {
		return err
	}

	return errs.PolicyInvalid.Withf("%s", strings.TrimPrefix(err.Error(), "policy set invalid: "))
}

func failedNames(rep *regotest.Report, limit int) string {
	var names []string
	for _, r := range rep.Results {
		if !r.Pass && len(names) < limit {
			names = append(names, r.Name)
		}
	}

	return strings.Join(names, ", ")
}

func setSize(req PushRequest) (int, error) {
	size := 0
	for name, src := range req.Modules {
		size += len(name) + len(src)
	}
	b, err := json.Marshal(req.Data)

	return size + len(b), err
}

// withoutRBAC returns a copy of data without nodex.rbac.
func withoutRBAC(data map[string]any) map[string]any {
	out := make(map[string]any, len(data))
	for k, v := range data {
		out[k] = v
	}

	nodex, ok := out["nodex"].(map[string]any)
	if !ok {
		return out
	}
	rest := make(map[string]any, len(nodex))
	for k, v := range nodex {
		if k != "rbac" {
			rest[k] = v
		}
	}
	if len(rest) == 0 {
		delete(out, "nodex")
	} else {
		out["nodex"] = rest
	}

	return out
}
