package executor

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nodexsec/nodex/services/sandbox-runner/internal/proto"
)

// processesOfIDs lists host processes whose real uid is in [lo, hi].
func processesOfIDs(lo, hi int) []string {
	var out []string
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		if _, err := strconv.Atoi(e.Name()); err != nil {
			continue
		}
		f, err := os.Open(filepath.Join("/proc", e.Name(), "status"))
		if err != nil {
			continue
		}
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			if v, ok := strings.CutPrefix(sc.Text(), "Uid:"); ok {
				if uid, err := strconv.Atoi(strings.Fields(v)[0]); err == nil && uid >= lo && uid <= hi {
					out = append(out, e.Name()+describeProcess(e.Name()))
				}
			}
		}
		f.Close()
	}
	return out
}

// programProcesses lists host processes running as a slot's program uid.
func programProcesses(e *Executor) []string {
	var out []string
	for slot := 0; slot < e.cfg.Slots; slot++ {
		uid := e.cfg.HostIDBase + 2*slot + 1
		out = append(out, processesOfIDs(uid, uid)...)
	}
	return out
}

// runCgroupsLeft lists run folders left under the executor's cgroups, apart
// from those of the inits prepared for the next runs. A prepared init may
// still be starting, so it waits up to two seconds for each folder to become
// one.
func runCgroupsLeft(e *Executor) []string {
	deadline := time.Now().Add(2 * time.Second)
	for {
		var out []string
		idle := e.idleCgroups()
		for _, c := range []string{"memory", "pids", "cpu", "cpuacct"} {
			h, ok := e.cgroups.Dir(c)
			if !ok {
				continue
			}
			entries, _ := os.ReadDir(h)
			for _, en := range entries {
				if p := filepath.Join(h, en.Name()); en.IsDir() && !idle[p] {
					out = append(out, p)
				}
			}
		}
		if len(out) == 0 || time.Now().After(deadline) {
			return out
		}
		time.Sleep(20 * time.Millisecond)
	}
}

type treeCase struct {
	name    string
	script  string
	reasons []string
}

var treeCases = []treeCase{
	{"setsid double fork", `
import os, time
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        time.sleep(300)
    os._exit(0)
os.wait()
print("parent done")
`, []string{ReasonExited}},
	{"grandchild holds stdout", `
import os, time
if os.fork() == 0:
    if os.fork() == 0:
        time.sleep(300)
    os._exit(0)
print("parent done", flush=True)
`, []string{ReasonExited}},
	{"fork bomb", `
import os
while True:
    try:
        os.fork()
    except OSError:
        pass
`, []string{ReasonPids}},
}

// checkTreeDeath runs one case and returns what went wrong: a late result, a
// wrong reason, a process left under the slot's ids, or a cgroup folder left.
func checkTreeDeath(t *testing.T, e *Executor, tc treeCase, layers proto.Layers) []string {
	const wall = 5 * time.Second
	start := time.Now()
	res := runSpec(t, e, Spec{Runtime: RuntimePython, Entrypoint: "main.py",
		Files:  []proto.File{{Path: "main.py", Data: []byte(tc.script)}},
		Limits: Limits{WallTime: wall}, Layers: layers})
	var p []string
	if took := time.Since(start); took > wall+2*time.Second {
		p = append(p, fmt.Sprintf("result took %v, want under %v", took, wall+2*time.Second))
	}
	if !containsString(tc.reasons, res.Reason) {
		p = append(p, fmt.Sprintf("got reason %s (stderr %q), want one of %v", res.Reason, res.Stderr, tc.reasons))
	}
	if left := programProcesses(e); len(left) > 0 {
		p = append(p, fmt.Sprintf("processes left under the program uids: %v", left))
	}
	if left := runCgroupsLeft(e); len(left) > 0 {
		p = append(p, fmt.Sprintf("cgroups left: %v", left))
	}
	return p
}

func containsString(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

func TestTreeDeath(t *testing.T) {
	e := newTestExecutor(t, 1)
	for _, tc := range treeCases {
		t.Run(tc.name, func(t *testing.T) {
			for _, p := range checkTreeDeath(t, e, tc, proto.Layers{}) {
				t.Error(p)
			}
		})
	}
}

// TestTreeDeathFailsWithoutTreeKill proves the check notices escaped processes:
// without the kill of the PID namespace when the program exits, the escapes
// keep the run alive until the wall timeout.
func TestTreeDeathFailsWithoutTreeKill(t *testing.T) {
	e := newTestExecutor(t, 1)
	for _, tc := range treeCases[:2] {
		t.Run(tc.name, func(t *testing.T) {
			if len(checkTreeDeath(t, e, tc, proto.Layers{NoTreeKill: true})) == 0 {
				t.Errorf("tree death check passed without the tree kill")
			}
		})
	}
}

// runnerHelperEnv makes the test binary act as a runner that starts one long
// sandbox run and blocks, so a test can kill it mid-run.
const runnerHelperEnv = "NODEX_TEST_RUNNER_HELPER"

// helperIDEnv passes the helper its host id base, apart from the test's.
const helperIDEnv = "NODEX_TEST_HELPER_ID_BASE"

func init() {
	if os.Getenv(runnerHelperEnv) == "" {
		return
	}
	initPath = os.Getenv(runnerHelperEnv)
	base, err := strconv.Atoi(os.Getenv(helperIDEnv))
	if err != nil {
		fmt.Println("helper: invalid", helperIDEnv)
		os.Exit(1)
	}
	e, err := New(Config{InitPath: initPath, Slots: 1, HostIDBase: base,
		Logger: discardLogger()})
	if err != nil {
		fmt.Println("helper:", err)
		os.Exit(1)
	}
	fmt.Println("helper ready")
	_, _ = e.Run(context.Background(), Spec{Argv: []string{"/usr/bin/sleep", "300"},
		Limits: Limits{WallTime: time.Hour}})
	os.Exit(0)
}

func TestRunnerDeathLeavesNoSandbox(t *testing.T) {
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(self, "-test.run=^$")
	helperIDBase := testIDBase + 32
	cmd.Env = append(os.Environ(), runnerHelperEnv+"="+initPath,
		helperIDEnv+"="+strconv.Itoa(helperIDBase))
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	line, _ := bufio.NewReader(out).ReadString('\n')
	if !strings.Contains(line, "helper ready") {
		t.Fatalf("helper said %q", line)
	}
	deadline := time.Now().Add(5 * time.Second)
	for len(processesOfIDs(helperIDBase, helperIDBase+1)) == 0 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if len(processesOfIDs(helperIDBase, helperIDBase+1)) == 0 {
		t.Fatal("the helper's sandbox never started")
	}
	_ = cmd.Process.Signal(syscall.SIGKILL)
	_ = cmd.Wait()

	deadline = time.Now().Add(5 * time.Second)
	for len(processesOfIDs(helperIDBase, helperIDBase+1)) > 0 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if left := processesOfIDs(helperIDBase, helperIDBase+1); len(left) > 0 {
		t.Errorf("sandbox processes outlived the runner: %v", left)
	}
	// The helper's folders remain until the next runner sweeps them.
	e := newTestExecutor(t, 1)
	for _, c := range []string{"memory", "pids", "cpu", "cpuacct"} {
		dir, ok := e.cgroups.Dir(c)
		if !ok {
			continue
		}
		pattern := filepath.Join(filepath.Dir(dir), fmt.Sprintf("runner-%d-*", cmd.Process.Pid))
		if left, _ := filepath.Glob(pattern); len(left) > 0 {
			t.Errorf("the dead runner's cgroups survived the sweep at start: %v", left)
		}
	}
}

// describeProcess returns a process's command, state, namespace PIDs and
// cgroups, to explain a process that outlived its sandbox.
func describeProcess(pid string) string {
	cmd, _ := os.ReadFile("/proc/" + pid + "/cmdline")
	status, _ := os.ReadFile("/proc/" + pid + "/status")
	cg, _ := os.ReadFile("/proc/" + pid + "/cgroup")
	var state, nspid, ppid string
	for _, line := range strings.Split(string(status), "\n") {
		switch {
		case strings.HasPrefix(line, "State:"):
			state = strings.TrimSpace(strings.TrimPrefix(line, "State:"))
		case strings.HasPrefix(line, "NSpid:"):
			nspid = strings.TrimSpace(strings.TrimPrefix(line, "NSpid:"))
		case strings.HasPrefix(line, "PPid:"):
			ppid = strings.TrimSpace(strings.TrimPrefix(line, "PPid:"))
		}
	}
	var pidsCgroup string
	for _, line := range strings.Split(string(cg), "\n") {
		if strings.Contains(line, ":pids:") {
			pidsCgroup = line
		}
	}
	return fmt.Sprintf("(%q state %s ppid %s nspid %s %s)", strings.ReplaceAll(string(cmd), "\x00", " "),
		state, ppid, nspid, pidsCgroup)
}
