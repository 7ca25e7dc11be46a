package executor

import (
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// killAndWaitDead sends SIGKILL to pid, an init of the test's executor, and
// waits until it is a zombie or reaped. The pid stays reserved until the
// runner reaps the init, and an init the runner has started to wait for
// may be reaped at once.
func killAndWaitDead(t *testing.T, pid int) {
	t.Helper()
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatalf("killing init %d: %v", pid, err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for state := processState(pid); state != "Z" && state != ""; state = processState(pid) {
		if time.Now().After(deadline) {
			t.Fatalf("init %d not dead 5 s after SIGKILL (state %q)", pid, processState(pid))
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// processState returns the state letter of /proc/<pid>/stat, or "" when
// the process is gone.
func processState(pid int) string {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return ""
	}
	// The command name in brackets may contain spaces, so the state is the
	// first field after its closing bracket.
	_, rest, ok := strings.Cut(string(b), ") ")
	if !ok || rest == "" {
		return ""
	}
	return rest[:1]
}

func idlePids(e *Executor) []int {
	e.mu.Lock()
	defer e.mu.Unlock()
	var pids []int
	for sp := range e.idle {
		pids = append(pids, sp.proc.Pid)
	}
	return pids
}

// TestDeadPreparedInitReplaced kills every prepared init of the only slot
// while it waits, so that the run must find each dead one before it hands
// it the config.
func TestDeadPreparedInitReplaced(t *testing.T) {
	e := newTestExecutor(t, 1)
	e.waitIdle()
	pids := idlePids(e)
	if len(pids) != preparedPerSlot {
		t.Fatalf("got %d prepared inits, want %d", len(pids), preparedPerSlot)
	}
	for _, pid := range pids {
		killAndWaitDead(t, pid)
	}

	res := runSpec(t, e, pythonSpec("print('ok')"))
	if res.Reason != ReasonExited {
		t.Errorf("got reason %s (error %q), want %s", res.Reason, res.Error, ReasonExited)
	}
	if string(res.Stdout) != "ok\n" {
		t.Errorf("got stdout %q (stderr %q), want ok", res.Stdout, res.Stderr)
	}
	if got := e.deadInits.Load(); got != int64(len(pids)) {
		t.Errorf("got %d dead inits replaced, want %d", got, len(pids))
	}
	if left := runCgroupsLeft(e); len(left) > 0 {
		t.Errorf("cgroups of the dead inits left: %v", left)
	}
}

// TestInitDeadAtHandoverRetried kills the init after the runner found it
// alive and before it sends the config: the failed handover shows that the
// program never started, so the run goes to a fresh init.
func TestInitDeadAtHandoverRetried(t *testing.T) {
	e := newTestExecutor(t, 1)
	killed := false
	e.beforeConfig = func(sp *sandboxProc) {
		if !killed {
			killed = true
			killAndWaitDead(t, sp.proc.Pid)
		}
	}
	res := runSpec(t, e, pythonSpec("print('ok')"))
	if !killed {
		t.Fatal("the hook did not run")
	}
	if res.Reason != ReasonExited {
		t.Errorf("got reason %s (error %q), want %s", res.Reason, res.Error, ReasonExited)
	}
	if string(res.Stdout) != "ok\n" {
		t.Errorf("got stdout %q (stderr %q), want ok", res.Stdout, res.Stderr)
	}
	if got := e.deadInits.Load(); got != 1 {
		t.Errorf("got %d dead inits replaced, want 1", got)
	}
}

// TestStartedRunNotRetried kills the init while its program runs. The
// program has started, so the run must end as failed rather than run the
// program a second time.
func TestStartedRunNotRetried(t *testing.T) {
	e := newTestExecutor(t, 1)
	pid := make(chan int, 1)
	e.beforeConfig = func(sp *sandboxProc) { pid <- sp.proc.Pid }
	go func() {
		p := <-pid
		// Python starts and reaches its sleep well within a second.
		time.Sleep(time.Second)
		_ = syscall.Kill(p, syscall.SIGKILL)
	}()
	spec := pythonSpec("import time\nprint('started', flush=True)\ntime.sleep(30)")
	spec.Limits.WallTime = 8 * time.Second
	res := runSpec(t, e, spec)
	if res.Reason == ReasonExited || res.Reason == ReasonTimeout {
		t.Errorf("got reason %s, want the run to fail when its init died", res.Reason)
	}
	if string(res.Stdout) != "started\n" {
		t.Errorf("got stdout %q, want the one run's output", res.Stdout)
	}
	if got := e.deadInits.Load(); got != 0 {
		t.Errorf("got %d dead inits replaced, want 0", got)
	}
}
