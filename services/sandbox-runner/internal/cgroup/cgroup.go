// Package cgroup creates one cgroup per sandbox run for the memory, pids, cpu
// and cpuacct controllers, choosing cgroup v1 or v2 per controller from
// /proc/self/mountinfo, and reads the run's resource use before removing it.
//
// Runs are nested under the runner's own cgroup, in nodex/runner-<pid>-<start>
// (the runner's PID and start time), so the limits of whatever started the
// runner still apply to its sandboxes, and several runners can share a host:
// each sweeps only the folders of runners that are gone.
package cgroup

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// ErrUnavailable reports that a controller has no usable hierarchy.
var ErrUnavailable = errors.New("cgroup: controller unavailable")

// Controller names as the kernel spells them.
const (
	Memory  = "memory"
	Pids    = "pids"
	CPU     = "cpu"
	CPUAcct = "cpuacct"
)

// hierarchy is the location of one controller's cgroups.
type hierarchy struct {
	version int    // 1 or 2
	root    string // the "nodex" folder under the runner's own cgroup
	dir     string // this runner's folder in root
}

// Manager creates and sweeps run cgroups. It is safe for concurrent use.
type Manager struct {
	ctrl map[string]hierarchy
}

// Limits are the per-run limits; a zero field leaves that limit unset.
type Limits struct {
	MemoryBytes int64
	Pids        int64
	// CPUCores caps CPU bandwidth (v1 cfs quota, v2 cpu.max), in cores.
	CPUCores float64
}

// Detect finds a hierarchy for each controller. A controller the host does not
// offer is left out; Available reports which ones are present.
func Detect() (*Manager, error) {
	mounts, err := readMounts()
	if err != nil {
		return nil, err
	}
	own, err := readOwnCgroups()
	if err != nil {
		return nil, err
	}
	m := &Manager{ctrl: map[string]hierarchy{}}
	for _, c := range []string{Memory, Pids, CPU, CPUAcct} {
		if h, ok := v1Hierarchy(c, mounts, own); ok {
			m.ctrl[c] = h
			continue
		}
		if h, ok := v2Hierarchy(c, mounts, own); ok {
			m.ctrl[c] = h
		}
	}
	instance, err := instanceName(os.Getpid())
	if err != nil {
		return nil, err
	}
	for c, h := range m.ctrl {
		h.dir = filepath.Join(h.root, instance)
		m.ctrl[c] = h
		if err := os.MkdirAll(h.dir, 0o755); err != nil {
			delete(m.ctrl, c)
		}
	}
	return m, nil
}

// instanceName names a runner's folder by PID and start time, so a reused PID
// does not make a dead runner's folder look alive.
func instanceName(pid int) (string, error) {
	start, err := startTime(pid)
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("runner-%d-%s", pid, start), nil
}

// startTime returns field 22 of /proc/<pid>/stat, the start time in clock
// ticks after boot.
func startTime(pid int) (string, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return "", fmt.Errorf("reading the start time of process %d: %w", pid, err)
	}
	// The command name (field 2) may contain spaces; fields resume after ')'.
	i := strings.LastIndexByte(string(b), ')')
	f := strings.Fields(string(b[i+1:]))
	if i < 0 || len(f) < 20 {
		return "", fmt.Errorf("parsing /proc/%d/stat", pid)
	}
	return f[19], nil
}

// liveInstance reports whether folder name belongs to a running runner.
func liveInstance(name string) bool {
	var pid int
	var start string
	if _, err := fmt.Sscanf(strings.ReplaceAll(name, "-", " "), "runner %d %s", &pid, &start); err != nil {
		return false
	}
	now, err := startTime(pid)
	return err == nil && now == start
}

// Available reports the cgroup version used for controller c, or 0.
func (m *Manager) Available(c string) int { return m.ctrl[c].version }

type mount struct {
	root, point, fstype string
	opts                []string
}

func readMounts() ([]mount, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil, fmt.Errorf("reading mountinfo: %w", err)
	}
	defer f.Close()
	var out []mount
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		left, right, ok := strings.Cut(sc.Text(), " - ")
		if !ok {
			continue
		}
		lf, rf := strings.Fields(left), strings.Fields(right)
		if len(lf) < 5 || len(rf) < 3 {
			continue
		}
		out = append(out, mount{root: lf[3], point: lf[4], fstype: rf[0],
			opts: strings.Split(rf[2], ",")})
	}
	return out, sc.Err()
}

// readOwnCgroups maps each v1 controller (and "" for v2) to the runner's path.
func readOwnCgroups() (map[string]string, error) {
	b, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		return nil, fmt.Errorf("reading /proc/self/cgroup: %w", err)
	}
	own := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		parts := strings.SplitN(line, ":", 3)
		if len(parts) != 3 {
			continue
		}
		if parts[1] == "" {
			own[""] = parts[2]
			continue
		}
		for _, c := range strings.Split(parts[1], ",") {
			own[c] = parts[2]
		}
	}
	return own, nil
}

func v1Hierarchy(c string, mounts []mount, own map[string]string) (hierarchy, bool) {
	path, ok := own[c]
	if !ok {
		return hierarchy{}, false
	}
	for _, mt := range mounts {
		if mt.fstype != "cgroup" || !contains(mt.opts, c) {
			continue
		}
		rel := strings.TrimPrefix(path, mt.root)
		return hierarchy{version: 1, root: filepath.Join(mt.point, rel, "nodex")}, true
	}
	return hierarchy{}, false
}

// v2Hierarchy uses the unified hierarchy only when it offers the controller;
// a mounted but empty cgroup2 (as beside v1 controllers) does not count.
func v2Hierarchy(c string, mounts []mount, own map[string]string) (hierarchy, bool) {
	path, ok := own[""]
	if !ok {
		return hierarchy{}, false
	}
	lookup := c
	if c == CPUAcct {
		lookup = CPU // v2 reports usage in cpu.stat
	}
	for _, mt := range mounts {
		if mt.fstype != "cgroup2" {
			continue
		}
		base := filepath.Join(mt.point, strings.TrimPrefix(path, mt.root))
		b, err := os.ReadFile(filepath.Join(base, "cgroup.controllers"))
		if err != nil || !contains(strings.Fields(string(b)), lookup) {
			continue
		}
		// NOTE: v2 needs the controller enabled in base's cgroup.subtree_control,
		// which the kernel refuses while base holds processes. That path has not
		// run on a host with a populated v2 hierarchy.
		_ = os.WriteFile(filepath.Join(base, "cgroup.subtree_control"), []byte("+"+lookup), 0)
		return hierarchy{version: 2, root: filepath.Join(base, "nodex")}, true
	}
	return hierarchy{}, false
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// Sweep kills the processes left in the run cgroups of runners that are gone
// and removes those cgroups. It returns how many run cgroups it removed.
func (m *Manager) Sweep() (int, error) {
	removed := 0
	var errs []error
	for _, h := range m.ctrl {
		instances, err := os.ReadDir(h.root)
		if err != nil {
			continue
		}
		for _, inst := range instances {
			if !inst.IsDir() || liveInstance(inst.Name()) {
				continue
			}
			dir := filepath.Join(h.root, inst.Name())
			runs, _ := os.ReadDir(dir)
			for _, r := range runs {
				if !r.IsDir() {
					continue
				}
				if err := removeDir(filepath.Join(dir, r.Name())); err != nil {
					errs = append(errs, err)
					continue
				}
				removed++
			}
			if err := removeDir(dir); err != nil {
				errs = append(errs, err)
			}
		}
	}
	return removed, errors.Join(errs...)
}

// removeDir kills what remains in a cgroup and removes it, retrying while the
// kernel still reports it busy.
func removeDir(dir string) error {
	var err error
	for attempt := 0; attempt < 100; attempt++ {
		if err = syscall.Rmdir(dir); err == nil || errors.Is(err, os.ErrNotExist) {
			return nil
		}
		killProcs(dir)
		time.Sleep(10 * time.Millisecond)
	}
	return fmt.Errorf("removing cgroup %s: %w", dir, err)
}

func killProcs(dir string) {
	b, err := os.ReadFile(filepath.Join(dir, "cgroup.procs"))
	if err != nil {
		return
	}
	for _, f := range strings.Fields(string(b)) {
		if pid, err := strconv.Atoi(f); err == nil && pid > 1 {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	}
}

// Dir returns this runner's folder of run cgroups for controller c.
func (m *Manager) Dir(c string) (string, bool) {
	h, ok := m.ctrl[c]
	return h.dir, ok
}
