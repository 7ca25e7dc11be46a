package corpus

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
)

// hostProbe measures containment from the host side: secrets and host file
// lines in program output, connections to loopback listeners, changed host
// files and program processes that outlive their run.
type hostProbe struct {
	markers  map[string]string // output marker -> where it comes from
	accepted atomic.Int64
	files    map[string]string // path -> digest before the run
	owned    map[string]bool   // non-root entries of watched folders before the run
}

// listenPorts are the loopback ports that RedCode items post files to or
// open reverse shells on. A sandbox with its own network namespace cannot
// reach them, so every accepted connection is an escape.
var listenPorts = []int{5388, 5389, 5758}

// watchedFiles are host files that hostile items read, delete or append to.
var watchedFiles = []string{"/etc/passwd", "/etc/shadow", "/etc/hosts", "/etc/group",
	"/root/.bashrc", "/root/.profile", "/usr/bin/python3"}

// watchedDirs are host folders where an escaped program would write.
var watchedDirs = []string{"/tmp", "/root", "/usr/bin", "/usr/local/bin"}

// newHostProbe records the host state and starts the loopback listeners.
// secrets are values that must never appear in output (the stored fake key,
// the agents' private keys).
func newHostProbe(t *testing.T, secrets map[string]string) *hostProbe {
	t.Helper()
	p := &hostProbe{markers: map[string]string{}, files: map[string]string{}}
	for value, from := range secrets {
		p.markers[value] = from
	}
	p.addHostLines("/etc/passwd")
	p.addHostLines("/etc/shadow")
	for _, f := range watchedFiles {
		p.files[f] = digest(f)
	}
	p.owned = nonRootEntries()
	for _, port := range listenPorts {
		p.listen(t, port)
	}

	return p
}

// addHostLines adds the host lines of an account file as markers, except
// those of root and nobody, which the sandbox's own generated /etc may
// contain too.
func (p *hostProbe) addHostLines(path string) {
	data, err := os.ReadFile(path)
	if err != nil {
		return
	}
	for _, line := range strings.Split(string(data), "\n") {
		if len(line) < 12 || strings.HasPrefix(line, "root:") || strings.HasPrefix(line, "nobody:") {
			continue
		}
		p.markers[line] = "host " + path
	}
}

func (p *hostProbe) listen(t *testing.T, port int) {
	l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(port))
	if err != nil {
		// NOTE: another process holds the port; the remaining listeners
		// and the network namespace checks still apply.
		t.Logf("loopback listener on port %d not started: %v", port, err)
		return
	}
	t.Cleanup(func() { _ = l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			p.accepted.Add(1)
			_ = c.Close()
		}
	}()
}

// leak returns a description of the first marker found in out, or "".
func (p *hostProbe) leak(out string) string {
	for m, from := range p.markers {
		if strings.Contains(out, m) {
			return "output contains " + from
		}
	}

	return ""
}

// check returns what changed on the host since newHostProbe.
func (p *hostProbe) check() []string {
	var problems []string
	if n := p.accepted.Load(); n > 0 {
		problems = append(problems, fmt.Sprintf("%d connections reached the loopback listeners", n))
	}
	for f, before := range p.files {
		if after := digest(f); after != before {
			problems = append(problems, "host file changed: "+f)
		}
	}
	for path := range nonRootEntries() {
		if !p.owned[path] {
			problems = append(problems, "new non-root file on the host: "+path)
		}
	}
	for _, cmd := range programDescendants() {
		problems = append(problems, "program process outlived its run: "+cmd)
	}

	return problems
}

func digest(path string) string {
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return "absent"
	}
	if err != nil {
		return "unreadable: " + err.Error()
	}
	sum := sha256.Sum256(data)

	return hex.EncodeToString(sum[:])
}

// nonRootEntries lists the entries of watchedDirs that a uid other than
// root owns. Sandboxed programs run as unprivileged host uids, so a file
// they wrote outside their work folder shows up here.
func nonRootEntries() map[string]bool {
	out := map[string]bool{}
	for _, dir := range watchedDirs {
		entries, err := os.ReadDir(dir)
		if err != nil {
			continue
		}
		for _, e := range entries {
			info, err := e.Info()
			if err != nil {
				continue
			}
			if st, ok := info.Sys().(*syscall.Stat_t); ok && st.Uid != 0 {
				out[filepath.Join(dir, e.Name())] = true
			}
		}
	}

	return out
}

// programDescendants returns the command lines of this process's
// descendants that run a program from a sandbox work folder (/work/...).
// Idle sandbox inits have no such argument, so after the last run the list
// must be empty.
//
// NOTE: a process that left this process tree (reparented to init) is not
// seen here. The pids cgroup and the pid namespace are what prevent that.
func programDescendants() []string {
	parent := map[int]int{}
	cmd := map[int]string{}
	procs, _ := os.ReadDir("/proc")
	for _, e := range procs {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		// The parent pid is the second field after the parenthesised name.
		rest := string(stat)[strings.LastIndexByte(string(stat), ')')+2:]
		fields := strings.Fields(rest)
		if len(fields) < 2 {
			continue
		}
		parent[pid], _ = strconv.Atoi(fields[1])
		c, _ := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		cmd[pid] = strings.ReplaceAll(string(c), "\x00", " ")
	}
	self := os.Getpid()
	var out []string
	for pid, c := range cmd {
		if !strings.Contains(c, "/work/") {
			continue
		}
		for p := parent[pid]; p > 1; p = parent[p] {
			if p == self {
				out = append(out, fmt.Sprintf("pid %d: %s", pid, clip(c)))
				break
			}
		}
	}

	return out
}

func fileExists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}
