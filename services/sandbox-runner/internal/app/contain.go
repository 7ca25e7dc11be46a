package app

import (
	"context"
	"errors"
	"strconv"
	"sync"

	"github.com/nodexsec/nodex/libs/errs"
	"github.com/nodexsec/nodex/libs/events"
	"github.com/nodexsec/nodex/services/sandbox-runner/internal/executor"
)

// Kill causes recorded in the sandbox.exec event of a run that a registry
// change ended. The run's reason stays "killed", the value the exec-reply and
// receipt schemas define for a run the runner ended.
const (
	CauseSuspended = "identity_suspended"
	CauseRevoked   = "identity_revoked"
)

// errContained ends the context of a run whose caller stopped being active.
var errContained = errors.New("app: caller no longer active")

// flights tracks the runs in progress per calling identity, and the
// identities contained since they stopped being active, so that a
// suspension ends runs already admitted and refuses runs still to come.
type flights struct {
	mu        sync.Mutex
	byCaller  map[string]map[*flight]struct{}
	contained map[string]string // identity id to kill cause
}

// flight is one run in progress, from admission to its end. cause is set
// under flights.mu before cancel is called.
type flight struct {
	cancel context.CancelCauseFunc
	cause  string
}

func newFlights() *flights {
	return &flights{byCaller: map[string]map[*flight]struct{}{}, contained: map[string]string{}}
}

// start registers a run of caller, or returns the kill cause when caller is
// contained already. The returned context ends when the caller is contained.
func (fs *flights) start(ctx context.Context, caller string) (context.Context, *flight, string) {
	fs.mu.Lock()
	defer fs.mu.Unlock()

	if cause, ok := fs.contained[caller]; ok {
		return nil, nil, cause
	}
	runCtx, cancel := context.WithCancelCause(ctx)
	f := &flight{cancel: cancel}
	if fs.byCaller[caller] == nil {
		fs.byCaller[caller] = map[*flight]struct{}{}
	}
	fs.byCaller[caller][f] = struct{}{}

	return runCtx, f, ""
}

// end removes f and returns its kill cause, empty if it was not contained.
func (fs *flights) end(caller string, f *flight) string {
	fs.mu.Lock()
	defer fs.mu.Unlock()

	delete(fs.byCaller[caller], f)
	if len(fs.byCaller[caller]) == 0 {
		delete(fs.byCaller, caller)
	}
	f.cancel(nil)

	return f.cause
}

// contain marks caller as contained with cause and cancels its runs. It
// returns how many runs it cancelled.
func (fs *flights) contain(caller, cause string) int {
	fs.mu.Lock()
	defer fs.mu.Unlock()

	fs.contained[caller] = cause
	for f := range fs.byCaller[caller] {
		f.cause = cause
		f.cancel(errContained)
	}

	return len(fs.byCaller[caller])
}

// release lets caller run again, after it became active again.
func (fs *flights) release(caller string) bool {
	fs.mu.Lock()
	defer fs.mu.Unlock()

	_, was := fs.contained[caller]
	delete(fs.contained, caller)

	return was
}

// IdentityChanged applies a registry change to the runs of that identity.
// When an identity is suspended or revoked, its running sandboxes are killed
// and its runs waiting for a slot cancelled. Its later requests are refused
// until it is active again. Each containment is one
// sandbox.identity_contained event.
// status is the identity's new status: "active", "suspended" or "revoked".
// It does not block, so the registry watch may call it.
func (s *Service) IdentityChanged(ctx context.Context, id, status string) {
	if status == "active" {
		if s.flights.release(id) {
			s.log.InfoContext(ctx, "identity released", "identity", id)
		}
		return
	}
	cause := CauseSuspended
	if status == "revoked" {
		cause = CauseRevoked
	}
	cancelled := s.flights.contain(id, cause)
	// The cancelled contexts kill their runs too; Kill reaches them at once,
	// without waiting for the run's supervision loop.
	killed := s.d.Runner.Kill("agent_id", id)
	s.log.InfoContext(ctx, "identity contained", "identity", id, "status", status,
		"runs_cancelled", cancelled, "sandboxes_killed", killed)
	s.d.Events.Publish(ctx, events.SecurityEvent{Type: "sandbox.identity_contained",
		Action: "kill", Resource: "agent_id:" + id, Subject: id, Status: events.StatusSuccess,
		Severity: events.SeverityHigh, Metadata: map[string]string{
			"cause": cause, "runs_cancelled": strconv.Itoa(cancelled),
			"sandboxes_killed": strconv.Itoa(killed)}})
}

// runContained runs spec as a flight of caller, so that containing the
// caller ends it. It returns the kill cause with the result. The error is a
// coded identity_inactive when the containment came before the run started.
func (s *Service) runContained(ctx context.Context, c Caller, spec executor.Spec,
) (executor.Result, string, error) {
	runCtx, f, cause := s.flights.start(ctx, c.ID)
	if cause != "" {
		return executor.Result{}, cause, errs.IdentityInactive.Withf(
			"identity %q is %s; no run started", c.ID, statusWord(cause))
	}
	res, err := s.d.Runner.Run(runCtx, spec)
	cause = s.flights.end(c.ID, f)
	if err != nil && cause != "" {
		return res, cause, errs.IdentityInactive.Withf(
			"identity %q is %s; its queued run was cancelled", c.ID, statusWord(cause))
	}
	if err != nil {
		return res, "", errs.SandboxBusy.Wrap(err)
	}
	if res.Reason != executor.ReasonKilled {
		// The run ended on its own before the kill reached it.
		cause = ""
	}

	return res, cause, nil
}

func statusWord(cause string) string {
	if cause == CauseRevoked {
		return "revoked"
	}
	return "suspended"
}
