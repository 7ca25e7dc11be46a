package executor

import (
	"context"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nodexsec/nodex/services/sandbox-runner/internal/proto"
)

type limitCase struct {
	name    string
	runtime string
	script  string
	limits  Limits
	// reason is the wanted reason; output, when set, must appear in stdout.
	reason string
	output string
}

var limitCases = []limitCase{
	{"python heap bomb", RuntimePython, `
chunks = []
while True:
    chunks.append(bytearray(16 << 20))
`, Limits{MemoryBytes: 128 << 20}, ReasonMemory, ""},
	{"node heap bomb", RuntimeNode, `
const chunks = [];
for (;;) chunks.push(Buffer.alloc(16 << 20, 1));
`, Limits{MemoryBytes: 128 << 20}, ReasonMemory, ""},
	{"full tmpfs", RuntimePython, `
import errno
try:
    with open("/tmp/fill", "wb") as f:
        while True:
            f.write(b"x" * (1 << 20))
except OSError as e:
    print(errno.errorcode[e.errno])
`, Limits{TmpBytes: 8 << 20}, ReasonExited, "ENOSPC"},
	{"million empty files", RuntimePython, `
import errno
try:
    for i in range(1000000):
        open("/work/f%d" % i, "w").close()
except OSError as e:
    print(errno.errorcode[e.errno])
`, Limits{}, ReasonExited, "ENOSPC"},
	// The outer shell stays alive: with a bare "wait" it could exit as soon
	// as its own pipeline returned, and the kernel then ended the bomb with
	// the namespace before it reached the pids limit.
	{"shell fork bomb", RuntimeSh, `b() { b | b & }; b; sleep 5`, Limits{}, ReasonPids, ""},
	{"thread bomb", RuntimePython, `
import threading, time
while True:
    threading.Thread(target=time.sleep, args=(60,), daemon=True).start()
`, Limits{}, ReasonPids, ""},
	{"cpu spinners", RuntimePython, `
import os
for _ in range(7):
    if os.fork() == 0:
        break
while True:
    pass
`, Limits{CPUTime: time.Second}, ReasonCPU, ""},
}

var neighbours = []limitCase{
	{"node neighbour", RuntimeNode, `
let s = 0; for (let i = 0; i < 1e6; i++) s += i; console.log(s);
`, Limits{}, ReasonExited, "499999500000"},
	{"multiprocessing pool", RuntimePython, `
from multiprocessing import Pool
def sq(x):
    return x * x
if __name__ == "__main__":
    with Pool(2) as p:
        print(sum(p.map(sq, range(100))))
`, Limits{}, ReasonExited, "328350"},
}

func checkLimit(tc limitCase, res Result) []string {
	var p []string
	if res.Reason != tc.reason {
		p = append(p, "got reason "+res.Reason+", want "+tc.reason+"; stderr: "+tail(res.Stderr))
	}
	if tc.output != "" && !strings.Contains(string(res.Stdout), tc.output) {
		p = append(p, "got stdout "+tail(res.Stdout)+", want "+tc.output)
	}
	return p
}

func tail(b []byte) string {
	if len(b) > 300 {
		b = b[len(b)-300:]
	}
	return string(b)
}

func specFor(tc limitCase) Spec {
	name := "main.py"
	if tc.runtime == RuntimeNode {
		name = "main.js"
	} else if tc.runtime == RuntimeSh {
		name = "main.sh"
	}
	return Spec{Runtime: tc.runtime, Entrypoint: name, Limits: tc.limits,
		Files: []proto.File{{Path: name, Data: []byte(tc.script)}}}
}

// TestLimitsWithNeighbours runs each hostile program beside a benign node run
// and a multiprocessing pool, which must pass unharmed.
func TestLimitsWithNeighbours(t *testing.T) {
	e := newTestExecutor(t, 3)
	for _, tc := range limitCases {
		t.Run(tc.name, func(t *testing.T) {
			var wg sync.WaitGroup
			results := make([]Result, len(neighbours))
			for i, n := range neighbours {
				wg.Add(1)
				go func() {
					defer wg.Done()
					time.Sleep(200 * time.Millisecond) // start while the hostile run is busy
					results[i], _ = e.Run(context.Background(), specFor(n))
				}()
			}
			res := runSpec(t, e, specFor(tc))
			wg.Wait()
			for _, p := range checkLimit(tc, res) {
				t.Error(p)
			}
			for i, n := range neighbours {
				for _, p := range checkLimit(n, results[i]) {
					t.Errorf("%s: %s", n.name, p)
				}
			}
		})
	}
}

// TestFileSizeLimitFailsWithoutRlimits shows the limit checks depend on the
// rlimit layer: without it, a file past the size limit is written.
func TestFileSizeLimitFailsWithoutRlimits(t *testing.T) {
	e := newTestExecutor(t, 1)
	tc := limitCase{"file size", RuntimePython, `
import errno
try:
    with open("/work/big", "wb") as f:
        f.write(b"x" * (4 << 20))
    print("wrote")
except OSError as e:
    print(errno.errorcode[e.errno])
`, Limits{FileBytes: 1 << 20}, ReasonExited, "EFBIG"}
	if p := checkLimit(tc, runSpec(t, e, specFor(tc))); len(p) > 0 {
		t.Errorf("with rlimits: %v", p)
	}
	off := specFor(tc)
	off.Layers.NoRlimits = true
	if p := checkLimit(tc, runSpec(t, e, off)); len(p) == 0 {
		t.Error("file size check passed with rlimits off")
	}
}

// TestLimitsFailWithoutCgroupLimits proves the limit checks depend on the
// cgroups: without them, the heap bomb meets only the address-space limit and
// the fork bomb only the process rlimit, and neither ends with its reason.
func TestLimitsFailWithoutCgroupLimits(t *testing.T) {
	e := newTestExecutor(t, 1)
	for _, tc := range []limitCase{limitCases[0], limitCases[4]} {
		t.Run(tc.name, func(t *testing.T) {
			spec := specFor(tc)
			spec.Layers.NoCgroupLimits = true
			if p := checkLimit(tc, runSpec(t, e, spec)); len(p) == 0 {
				t.Errorf("%s ended with reason %s without cgroup limits", tc.name, tc.reason)
			}
		})
	}
}

func TestOutputCapKillsAndTruncates(t *testing.T) {
	e := newTestExecutor(t, 1)
	spec := pythonSpec("import sys\nwhile True:\n    sys.stdout.write('x' * 65536)\n")
	spec.Limits.OutputBytes = 64 << 10
	res := runSpec(t, e, spec)
	if res.Reason != ReasonOutputLimit {
		t.Errorf("got reason %s, want %s", res.Reason, ReasonOutputLimit)
	}
	if !res.StdoutTruncated || len(res.Stdout) != 64<<10 {
		t.Errorf("got %d bytes, truncated %v; want exactly %d bytes, truncated", len(res.Stdout),
			res.StdoutTruncated, 64<<10)
	}
}

// TestAddressSpaceLimitSetBeforeExec checks that a shell starts with its
// address-space limit, soft and hard, at four times the memory limit: the
// program's process sets it on itself before exec, so the shell never runs
// without it. With the rlimit layer off the limit is gone.
func TestAddressSpaceLimitSetBeforeExec(t *testing.T) {
	e := newTestExecutor(t, 1)
	spec := Spec{Runtime: RuntimeSh, Entrypoint: "main.sh", Limits: Limits{MemoryBytes: 64 << 20},
		Files: []proto.File{{Path: "main.sh", Data: []byte("ulimit -S -v\nulimit -H -v\n")}}}
	const want = "262144\n262144\n" // KiB
	if res := runSpec(t, e, spec); string(res.Stdout) != want {
		t.Errorf("got %q (reason %s, %s), want %q", res.Stdout, res.Reason, res.Stderr, want)
	}
	spec.Layers.NoRlimits = true
	if res := runSpec(t, e, spec); string(res.Stdout) == want {
		t.Errorf("got %q with rlimits off, want no limit", res.Stdout)
	}
}

// TestMemoryLimitAboveDefault runs with a memory limit above the executor's
// default, which the prepared init's cgroup already has, so the runner must
// raise it: a program that touches more than the default must then pass.
func TestMemoryLimitAboveDefault(t *testing.T) {
	e := newTestExecutor(t, 1)
	spec := pythonSpec("b = bytearray(" + strconv.FormatInt(DefaultLimits.MemoryBytes*3/2, 10) +
		")\nprint(len(b) > 0)\n")
	spec.Limits.MemoryBytes = 2 * DefaultLimits.MemoryBytes
	res := runSpec(t, e, spec)
	if res.Reason != ReasonExited || string(res.Stdout) != "True\n" {
		t.Errorf("got reason %s, output %q (%s), want a clean exit printing True", res.Reason,
			res.Stdout, res.Stderr)
	}
}
