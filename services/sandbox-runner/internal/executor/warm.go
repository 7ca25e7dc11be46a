package executor

import "errors"

// ErrClosed reports a run on a closed executor.
var ErrClosed = errors.New("executor: closed")

// Each slot keeps one sandbox-init started ahead of its next run: the clone
// into new namespaces, the exec of sandbox-init and the cgroup attach (which
// on cgroup v1 waits for an RCU grace period) then happen off the request's
// path. A slot's next init is started as soon as its current one is taken,
// so it runs beside the current run.

// prewarm starts the next init of slot in the background. A failure leaves
// nil, and the run then starts its init itself.
func (e *Executor) prewarm(slot int) {
	go func() {
		sp, err := e.spawnInit(slot)
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
// failed, and prepares the next.
func (e *Executor) takeInit(slot int) (*sandboxProc, error) {
	sp := <-e.warm[slot]
	e.prewarm(slot)
	if sp != nil {
		e.mu.Lock()
		delete(e.idle, sp)
		e.mu.Unlock()
		return sp, nil
	}
	return e.spawnInit(slot)
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
