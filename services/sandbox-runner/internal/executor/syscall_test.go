package executor

import (
	"os"
	"strings"
	"testing"

	"github.com/nodexsec/nodex/services/sandbox-runner/internal/proto"
)

// syscallCase is one row of the system call matrix: the probe case, the line it
// must print ("" when the filter kills it), and the call that must be recorded
// as a denial ("" when none).
type syscallCase struct {
	name   string
	output string
	denial string
}

var syscallMatrix = []syscallCase{
	{"i386", "", ""},
	{"x32", "", ""},
	{"clone_ns", "EPERM", "clone"},
	{"clone3", "ENOSYS", ""},
	{"unshare", "EPERM", "unshare"},
	{"setns", "EPERM", "setns"},
	{"inet", "EPERM", "socket"},
	{"inet6", "EPERM", "socket"},
	{"vsock", "EPERM", "socket"},
	{"netlink", "EPERM", "socket"},
	{"packet", "EPERM", "socket"},
	{"alg", "EPERM", "socket"},
	{"unix_pair", "ok", ""},
	{"tiocsti", "EPERM", "ioctl"},
	{"io_uring", "EPERM", "io_uring_setup"},
	{"userfaultfd", "EPERM", "userfaultfd"},
	{"bpf", "EPERM", "bpf"},
	{"keyctl", "EPERM", "keyctl"},
	{"personality", "EPERM", "personality"},
	{"personality_query", "ok", ""},
	{"ptrace", "EPERM", "ptrace"},
	{"fsopen", "EPERM", "fsopen"},
	{"mount", "EPERM", "mount"},
	{"kexec", "", ""},
}

func probeFile(t testing.TB) proto.File {
	t.Helper()
	b, err := os.ReadFile(probeBinary)
	if err != nil {
		t.Fatalf("reading probe: %v", err)
	}
	return proto.File{Path: "probe", Mode: 0o755, Data: b}
}

// checkSyscall runs one matrix row and returns what differs from the table.
func checkSyscall(t *testing.T, e *Executor, tc syscallCase, layers proto.Layers) []string {
	res := runSpec(t, e, Spec{
		Argv: []string{"/work/probe", tc.name}, Files: []proto.File{probeFile(t)}, Layers: layers,
	})
	var problems []string
	got := strings.TrimSpace(string(res.Stdout))
	if tc.output == "" {
		// Killed by the filter: no output, SIGSYS, reason seccomp.
		if got != "" || res.Reason != ReasonSeccomp {
			problems = append(problems, "got output "+got+" reason "+res.Reason+", want a seccomp kill")
		}
	} else if got != tc.output {
		problems = append(problems, "got output "+got+", want "+tc.output)
	}
	var want []string
	if tc.denial != "" {
		want = []string{tc.denial}
	}
	var denied []string
	for _, d := range res.Denials {
		denied = append(denied, d.Syscall)
	}
	if strings.Join(denied, ",") != strings.Join(want, ",") {
		problems = append(problems, "got denials ["+strings.Join(denied, ",")+"], want ["+
			strings.Join(want, ",")+"]")
	}
	return problems
}

func TestSyscallMatrix(t *testing.T) {
	e := newTestExecutor(t, 2)
	for _, tc := range syscallMatrix {
		t.Run(tc.name, func(t *testing.T) {
			for _, p := range checkSyscall(t, e, tc, proto.Layers{}) {
				t.Error(p)
			}
		})
	}
}

// TestSyscallMatrixFailsWithoutSeccomp proves the matrix detects a missing
// filter: with seccomp off, every row that expects a denial or a kill differs.
func TestSyscallMatrixFailsWithoutSeccomp(t *testing.T) {
	e := newTestExecutor(t, 2)
	for _, tc := range syscallMatrix {
		if tc.output == "ok" {
			continue
		}
		t.Run(tc.name, func(t *testing.T) {
			if len(checkSyscall(t, e, tc, proto.Layers{NoSeccomp: true})) == 0 {
				t.Errorf("matrix row %s passed with seccomp off", tc.name)
			}
		})
	}
}
