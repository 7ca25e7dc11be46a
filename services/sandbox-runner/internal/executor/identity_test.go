package executor

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/nodexsec/nodex/services/sandbox-runner/internal/proto"
)

// identity mirrors the probe's Identity report.
type identity struct {
	UID, GID, EUID, EGID int
	Groups               []int
	Status               map[string]string
	UIDMap, GIDMap       string
	MountInfo            []string
	Environ              []string
	PID1Exe              string
	PID1Environ          string
	Hostname             string
	MaxUserNamespaces    string
	FDs                  []string
	ShadowReadable       bool
}

// allowedMountRoots are the roots (mountinfo field 4) a sandbox mount may
// show: whole file systems, the /usr bind, the device binds and the /proc binds.
var allowedMountRoots = []string{"/", "/usr", "/null", "/zero", "/random", "/urandom",
	"/sys", "/sysrq-trigger", "/irq", "/bus", "/fs"}

var deviceMounts = []string{"/dev/null", "/dev/zero", "/dev/random", "/dev/urandom"}

func runIdentity(t *testing.T, e *Executor, layers proto.Layers) identity {
	t.Helper()
	res := runSpec(t, e, Spec{Argv: []string{"/work/probe", "identity"},
		Files: []proto.File{probeFile(t)}, Layers: layers})
	var id identity
	if err := json.Unmarshal(res.Stdout, &id); err != nil {
		t.Fatalf("decoding identity (reason %s, error %q, stderr %q): %v",
			res.Reason, res.Error, res.Stderr, err)
	}
	return id
}

// checkIdentity returns every way the identity differs from the sandbox's
// promise.
func checkIdentity(e *Executor, id identity) []string {
	var p []string
	add := func(format string, a ...any) { p = append(p, fmt.Sprintf(format, a...)) }
	if id.UID != programID || id.GID != programID || id.EUID != programID || id.EGID != programID {
		add("got uid %d gid %d euid %d egid %d, want %d", id.UID, id.GID, id.EUID, id.EGID, programID)
	}
	if len(id.Groups) != 0 {
		add("got groups %v, want none", id.Groups)
	}
	for _, k := range []string{"CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"} {
		if id.Status[k] != "0000000000000000" {
			add("got %s %s, want empty", k, id.Status[k])
		}
	}
	if id.Status["NoNewPrivs"] != "1" {
		add("got NoNewPrivs %q, want 1", id.Status["NoNewPrivs"])
	}
	if id.Status["Seccomp"] != "2" {
		add("got Seccomp %q, want 2", id.Status["Seccomp"])
	}
	wantMap := fmt.Sprintf("0 %d 1|%d %d 1", e.cfg.HostIDBase, programID, e.cfg.HostIDBase+1)
	for name, m := range map[string]string{"uid_map": id.UIDMap, "gid_map": id.GIDMap} {
		if got := normalizeMap(m); !strings.HasPrefix(got, "0 ") || len(strings.Split(got, "|")) != 2 {
			add("got %s %q, want two lines like %q", name, got, wantMap)
		}
	}
	p = append(p, checkMounts(id.MountInfo)...)
	env := slices.Clone(id.Environ)
	slices.Sort(env)
	want := slices.Clone(baseEnv)
	slices.Sort(want)
	if !slices.Equal(env, want) {
		add("got environment %v, want %v", env, want)
	}
	if id.PID1Exe == "readable" || id.PID1Environ == "readable" {
		add("PID 1 exe %s, environ %s, want both unreadable", id.PID1Exe, id.PID1Environ)
	}
	if id.ShadowReadable {
		add("/etc/shadow is readable")
	}
	if id.MaxUserNamespaces != "0" {
		add("got max_user_namespaces %q, want 0", id.MaxUserNamespaces)
	}
	p = append(p, checkDescriptors(id.FDs)...)
	return p
}

func normalizeMap(m string) string {
	var lines []string
	for _, l := range strings.Split(strings.TrimSpace(m), "\n") {
		lines = append(lines, strings.Join(strings.Fields(l), " "))
	}
	return strings.Join(lines, "|")
}

// checkMounts checks each mountinfo line: nosuid and nodev (device binds keep
// dev), no shared propagation, a root from the allowed list, and a read-only /.
func checkMounts(lines []string) []string {
	var p []string
	rootSeen := false
	for _, line := range lines {
		left, _, _ := strings.Cut(line, " - ")
		f := strings.Fields(left)
		if len(f) < 6 {
			p = append(p, "malformed mountinfo line "+line)
			continue
		}
		root, point, opts := f[3], f[4], strings.Split(f[5], ",")
		if !slices.Contains(opts, "nosuid") {
			p = append(p, point+" lacks nosuid")
		}
		if !slices.Contains(opts, "nodev") && !slices.Contains(deviceMounts, point) {
			p = append(p, point+" lacks nodev")
		}
		if strings.Contains(left, "shared:") || strings.Contains(left, "master:") {
			p = append(p, point+" propagates to or from another mount")
		}
		if !slices.Contains(allowedMountRoots, root) {
			p = append(p, point+" shows host path "+root)
		}
		if point == "/" {
			rootSeen = true
			if !slices.Contains(opts, "ro") {
				p = append(p, "/ is not read-only")
			}
		}
	}
	if !rootSeen {
		p = append(p, "no / in mountinfo")
	}
	return p
}

func TestIdentityProbe(t *testing.T) {
	e := newTestExecutor(t, 1)
	for _, problem := range checkIdentity(e, runIdentity(t, e, proto.Layers{})) {
		t.Error(problem)
	}
}

// TestIdentityProbeDetectsMissingLayers switches off one layer at a time and
// checks that the identity probe then reports a problem.
func TestIdentityProbeDetectsMissingLayers(t *testing.T) {
	e := newTestExecutor(t, 1)
	tests := []struct {
		name   string
		layers proto.Layers
	}{
		{"credentials", proto.Layers{NoCredDrop: true}},
		{"seccomp", proto.Layers{NoSeccomp: true}},
		{"read-only root", proto.Layers{NoReadOnly: true}},
		{"proc masks", proto.Layers{NoProcMasks: true}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if len(checkIdentity(e, runIdentity(t, e, tt.layers))) == 0 {
				t.Errorf("identity probe passed with %s off", tt.name)
			}
		})
	}
}

func TestLandlockBlocksExecFromTmp(t *testing.T) {
	e := newTestExecutor(t, 1)
	for _, tt := range []struct {
		name   string
		layers proto.Layers
		want   string
	}{
		{"on", proto.Layers{}, "EACCES"},
		{"off", proto.Layers{NoLandlock: true}, "ok"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			res := runSpec(t, e, Spec{Argv: []string{"/work/probe", "exec_tmp"},
				Files: []proto.File{probeFile(t)}, Layers: tt.layers})
			if got := strings.TrimSpace(string(res.Stdout)); got != tt.want {
				t.Errorf("got %q (stderr %q), want %q", got, res.Stderr, tt.want)
			}
		})
	}
}

// checkDescriptors checks that the program holds only stdin (/dev/null),
// stdout and stderr (pipes), and the descriptor the probe used to list them.
func checkDescriptors(fds []string) []string {
	var p []string
	for _, fd := range fds {
		num, target, _ := strings.Cut(fd, "=")
		switch {
		case num == "0" && target == "/dev/null":
		case (num == "1" || num == "2") && strings.HasPrefix(target, "pipe:"):
		case strings.HasPrefix(target, "/proc/") && strings.HasSuffix(target, "/fd"):
		default:
			p = append(p, "unexpected open descriptor "+fd)
		}
	}
	if len(fds) < 3 {
		p = append(p, fmt.Sprintf("got descriptors %v, want stdin, stdout and stderr", fds))
	}
	return p
}
