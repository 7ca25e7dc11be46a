package cgroup

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// Group is the set of per-controller folders of one run.
type Group struct {
	dirs map[string]hierarchyDir
	// memoryBytes is the v1 memory limit written last, 0 before the first.
	memoryBytes int64
}

type hierarchyDir struct {
	version int
	path    string
}

// Stats is a run's resource use, read before the group is removed.
type Stats struct {
	PeakMemoryBytes int64
	OOMKills        int64
	// PidsLimitHits counts forks refused by the pids limit.
	PidsLimitHits int64
	CPUTime       time.Duration
}

// Create makes the run's folders and writes the limits. Controllers the host
// lacks are skipped; the caller checks Available for the ones it requires.
func (m *Manager) Create(name string, lim Limits) (*Group, error) {
	g := &Group{dirs: map[string]hierarchyDir{}}
	for c, h := range m.ctrl {
		dir := filepath.Join(h.dir, name)
		if err := os.Mkdir(dir, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
			g.Remove()
			return nil, fmt.Errorf("creating cgroup %s: %w", dir, err)
		}
		g.dirs[c] = hierarchyDir{version: h.version, path: dir}
	}
	if err := g.setLimits(lim); err != nil {
		g.Remove()
		return nil, err
	}
	return g, nil
}

func write(dir, file, value string) error {
	if err := os.WriteFile(filepath.Join(dir, file), []byte(value), 0); err != nil {
		return fmt.Errorf("writing %s to %s: %w", value, filepath.Join(dir, file), err)
	}
	return nil
}

// SetLimits writes the limits; a zero field leaves that limit as it is.
func (g *Group) SetLimits(lim Limits) error { return g.setLimits(lim) }

func (g *Group) setLimits(lim Limits) error {
	if d, ok := g.dirs[Memory]; ok && lim.MemoryBytes > 0 {
		v := strconv.FormatInt(lim.MemoryBytes, 10)
		if d.version == 1 {
			// Memory plus swap equal to memory: no swap. The file exists only with
			// swap accounting enabled. The kernel keeps the memory limit at or
			// below memory plus swap, so raising a set limit writes that file first.
			_, err := os.Stat(filepath.Join(d.path, "memory.memsw.limit_in_bytes"))
			memsw := err == nil
			files := []string{"memory.limit_in_bytes", "memory.memsw.limit_in_bytes"}
			if g.memoryBytes > 0 && lim.MemoryBytes > g.memoryBytes {
				files[0], files[1] = files[1], files[0]
			}
			for _, f := range files {
				if f == "memory.memsw.limit_in_bytes" && !memsw {
					continue
				}
				if err := write(d.path, f, v); err != nil {
					return err
				}
			}
			g.memoryBytes = lim.MemoryBytes
			_ = write(d.path, "memory.swappiness", "0")
		} else {
			if err := write(d.path, "memory.max", v); err != nil {
				return err
			}
			_ = write(d.path, "memory.swap.max", "0")
		}
	}
	if d, ok := g.dirs[Pids]; ok && lim.Pids > 0 {
		if err := write(d.path, "pids.max", strconv.FormatInt(lim.Pids, 10)); err != nil {
			return err
		}
	}
	if d, ok := g.dirs[CPU]; ok && lim.CPUCores > 0 {
		const period = 100000
		quota := strconv.Itoa(int(lim.CPUCores * period))
		if d.version == 1 {
			if err := write(d.path, "cpu.cfs_period_us", strconv.Itoa(period)); err != nil {
				return err
			}
			return write(d.path, "cpu.cfs_quota_us", quota)
		}
		return write(d.path, "cpu.max", quota+" "+strconv.Itoa(period))
	}
	return nil
}

// Attach moves pid into every folder of the group. On v1 a process's earlier
// charges stay where they were, so attach before the process allocates.
func (g *Group) Attach(pid int) error {
	for _, d := range g.dirs {
		if err := write(d.path, "cgroup.procs", strconv.Itoa(pid)); err != nil {
			return err
		}
	}
	return nil
}

// CPUTime returns the CPU time used by the group so far.
func (g *Group) CPUTime() (time.Duration, error) {
	if d, ok := g.dirs[CPUAcct]; ok && d.version == 1 {
		b, err := os.ReadFile(filepath.Join(d.path, "cpuacct.usage"))
		if err != nil {
			return 0, fmt.Errorf("reading cpu usage: %w", err)
		}
		ns, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
		return time.Duration(ns), err
	}
	for _, c := range []string{CPU, CPUAcct} {
		if d, ok := g.dirs[c]; ok && d.version == 2 {
			us, err := readKey(filepath.Join(d.path, "cpu.stat"), "usage_usec")
			return time.Duration(us) * time.Microsecond, err
		}
	}
	return 0, ErrUnavailable
}

// Stats reads the run's resource use.
func (g *Group) Stats() Stats {
	var s Stats
	s.CPUTime, _ = g.CPUTime()
	if d, ok := g.dirs[Memory]; ok {
		if d.version == 1 {
			s.PeakMemoryBytes = readInt(filepath.Join(d.path, "memory.max_usage_in_bytes"))
			s.OOMKills, _ = readKey(filepath.Join(d.path, "memory.oom_control"), "oom_kill")
		} else {
			s.PeakMemoryBytes = readInt(filepath.Join(d.path, "memory.peak"))
			s.OOMKills, _ = readKey(filepath.Join(d.path, "memory.events"), "oom_kill")
		}
	}
	if d, ok := g.dirs[Pids]; ok {
		s.PidsLimitHits, _ = readKey(filepath.Join(d.path, "pids.events"), "max")
	}
	return s
}

// Remove deletes every folder of the group, killing what is left in it.
func (g *Group) Remove() error {
	var errs []error
	for _, d := range g.dirs {
		if err := removeDir(d.path); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Paths returns the group's folders, for tests that check they are gone.
func (g *Group) Paths() []string {
	var out []string
	for _, d := range g.dirs {
		out = append(out, d.path)
	}
	return out
}

func readInt(path string) int64 {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	n, _ := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
	return n
}

// readKey reads "key value" lines, as in memory.oom_control and cpu.stat.
func readKey(path, key string) (int64, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(line, " ")
		if ok && k == key {
			return strconv.ParseInt(strings.TrimSpace(v), 10, 64)
		}
	}
	return 0, nil
}

// PidsLimitHits returns how many forks the pids limit has refused so far.
func (g *Group) PidsLimitHits() int64 {
	d, ok := g.dirs[Pids]
	if !ok {
		return 0
	}
	n, _ := readKey(filepath.Join(d.path, "pids.events"), "max")
	return n
}
