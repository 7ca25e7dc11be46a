package executor

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/nodexsec/nodex/services/sandbox-runner/internal/proto"
)

// ErrClosed reports a run on a closed executor.
var ErrClosed = errors.New("executor: closed")

// Each slot keeps preparedPerSlot sandbox-inits started ahead of its next
// runs: the clone into new namespaces, the exec of sandbox-init, the cgroup
// attach (which on cgroup v1 waits for an RCU grace period) and the init's
// preparation of the root and of its restrictions then happen off the
// request's path. A slot replaces the init a run took once that run is over,
// so the preparation does not compete with the run for CPU time, and the
// second prepared init serves a run that follows at once.

// preparedPerSlot is how many inits each slot keeps prepared.
const preparedPerSlot = 2

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

// takeInit returns one of the slot's prepared inits, or starts one when
// preparing it failed. The init's cleanUp prepares its replacement. A run
// that switches layers off (only tests do) gets an init of its own, and the
// prepared ones stay for the next runs. A prepared init that has died while
// it waited (killed, OOM, crashed) is reaped and replaced, and the run takes
// the next one.
func (e *Executor) takeInit(slot int, layers proto.Layers) (*sandboxProc, error) {
	if layers != (proto.Layers{}) {
		return e.spawnInit(slot, layers)
	}
	for dead := 0; ; dead++ {
		sp := <-e.warm[slot]
		if sp == nil {
			sp, err := e.spawnInit(slot, proto.Layers{})
			if err != nil {
				e.prewarm(slot)
				return nil, err
			}
			sp.replace, sp.slot = true, slot
			return sp, nil
		}
		e.mu.Lock()
		delete(e.idle, sp)
		e.mu.Unlock()
		if !sp.hasExited() {
			sp.replace, sp.slot = true, slot
			return sp, nil
		}
		state, detail, err := sp.reapIdle()
		if err != nil {
			e.log.Error("removing the cgroup of a dead sandbox-init", "slot", slot, "error", err)
		}
		e.prewarm(slot)
		e.noteDeadInit(slot, "while prepared", state, detail)
		// Inits that die on their own as fast as they are prepared point to
		// a host problem, which waiting for more replacements does not fix.
		if dead+1 >= 2*preparedPerSlot {
			return nil, fmt.Errorf("slot %d: %d prepared sandbox-inits in a row had exited "+
				"before their run, the last with %s: %s", slot, dead+1, state, detail)
		}
	}
}

// noteDeadInit logs and counts an init replaced because it had exited
// before it received its run. when names the point where it was found, and
// detail is the error in the init's status, if it sent one.
func (e *Executor) noteDeadInit(slot int, when, state, detail string) {
	total := e.deadInits.Add(1)
	attrs := []any{"slot", slot, "found", when, "exit_status", state, "replaced_total", total}
	if detail != "" {
		attrs = append(attrs, "init_error", detail)
	}
	e.log.Warn("replacing a sandbox-init that exited before its run", attrs...)
}

// waitIdle waits until the runs' inits are gone and every prepared init has
// finished its preparation and waits for its config, so that a benchmark's
// next measurement runs on a quiet machine. No run may be in progress.
func (e *Executor) waitIdle() {
	e.cleanups.Wait()
	e.preparing.Wait()
	e.mu.Lock()
	var pids []int
	for sp := range e.idle {
		pids = append(pids, sp.proc.Pid)
	}
	e.mu.Unlock()
	deadline := time.Now().Add(5 * time.Second)
	for _, pid := range pids {
		for !readingConfig(pid) && time.Now().Before(deadline) {
			time.Sleep(100 * time.Microsecond)
		}
	}
}

// readingConfig reports whether process pid is blocked in read(2) on the
// config descriptor, as /proc/<pid>/syscall shows ("0 0x3 ...").
func readingConfig(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/syscall")
	if err != nil {
		return true // gone: nothing to wait for
	}
	f := strings.Fields(string(b))
	return len(f) >= 2 && f[0] == "0" && f[1] == "0x"+strconv.Itoa(proto.ConfigFD)
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
		for i := 0; i < preparedPerSlot; i++ {
			if sp := <-e.warm[slot]; sp != nil {
				e.mu.Lock()
				delete(e.idle, sp)
				e.mu.Unlock()
				errs = append(errs, sp.discard())
			}
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
