package executor

import (
	"errors"

	"github.com/nodexsec/nodex/services/sandbox-runner/internal/proto"
)

// ErrClosed reports a run on a closed executor.
var ErrClosed = errors.New("executor: closed")

// Each slot keeps one sandbox-init started ahead of its next run: the clone
// into new namespaces, the exec of sandbox-init, the cgroup attach (which on
// cgroup v1 waits for an RCU grace period) and the init's preparation of the
// root and of its restrictions then happen off the request's path. A slot's
// next init is started as soon as its current one is taken, so it runs beside
// the current run.

// prewarm starts the next init of slot in the background. A failure leaves
// nil, and the run then starts its init itself.
func (e *Executor) prewarm(slot int) {
	e.preparing.Add(1)
	go func() {
		defer e.preparing.Done()
		sp, err := e.spawnInit(slot, proto.Layers{})
		if err != nil {
			e.log.Warn("starting a sandbox ahead of time failed", "slot", slot, "error", err)
			sp = nil
		}
		e.mu.Lock()
		closed := e.closed
		if sp != nil && !closed {
			e.idle[sp] = true
		}
		e.mu.Unlock()
		if closed && sp != nil {
			_ = sp.discard()
			sp = nil
		}
		e.warm[slot] <- sp
	}()
}

// takeInit returns the slot's prepared init, or starts one when preparing it
// failed, and prepares the next. A run that switches layers off (only tests
// do) gets an init of its own, and the prepared one stays for the next run.
func (e *Executor) takeInit(slot int, layers proto.Layers) (*sandboxProc, error) {
	if layers != (proto.Layers{}) {
		return e.spawnInit(slot, layers)
	}
	sp := <-e.warm[slot]
	e.prewarm(slot)
	if sp != nil {
		e.mu.Lock()
		delete(e.idle, sp)
		e.mu.Unlock()
		return sp, nil
	}
	return e.spawnInit(slot, proto.Layers{})
}

// waitIdle waits until the runs' inits are gone and every slot's next init
// is prepared, so that a benchmark's next measurement runs on a quiet machine.
// No run may be in progress.
func (e *Executor) waitIdle() {
	e.cleanups.Wait()
	e.preparing.Wait()
}

// Close stops the executor: later runs fail with ErrClosed and the prepared
// inits are killed. Runs in progress finish.
func (e *Executor) Close() error {
	e.mu.Lock()
	if e.closed || e.cfg.Insecure {
		e.closed = true
		e.mu.Unlock()
		return nil
	}
	e.closed = true
	e.mu.Unlock()
	var errs []error
	for slot := range e.warm {
		if sp := <-e.warm[slot]; sp != nil {
			e.mu.Lock()
			delete(e.idle, sp)
			e.mu.Unlock()
			errs = append(errs, sp.discard())
		}
	}
	e.cleanups.Wait()
	return errors.Join(errs...)
}

// idleCgroups returns the cgroup folders of the inits waiting for a run.
func (e *Executor) idleCgroups() map[string]bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := map[string]bool{}
	for sp := range e.idle {
		for _, p := range sp.group.Paths() {
			out[p] = true
		}
	}
	return out
}
