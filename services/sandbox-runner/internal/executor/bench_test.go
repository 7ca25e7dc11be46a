package executor

import (
	"context"
	"fmt"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nodexsec/nodex/libs/conf"
	"github.com/nodexsec/nodex/services/sandbox-runner/internal/proto"
)

// bwrapArgs runs python3 under bubblewrap with a read-only /usr, the
// merged-usr links, a fresh /proc and /dev, and every namespace unshared.
var bwrapArgs = []string{"--ro-bind", "/usr", "/usr", "--symlink", "usr/bin", "/bin",
	"--symlink", "usr/lib", "/lib", "--symlink", "usr/lib64", "/lib64", "--proc", "/proc",
	"--dev", "/dev", "--tmpfs", "/tmp", "--unshare-all", "--die-with-parent", "--new-session",
	"/usr/bin/python3", "-c", "pass"}

// stepTable collects the steps of many runs, by name in the order of the
// first run. Steps before run_start ran while the init waited for its run.
type stepTable struct {
	names []string
	gaps  map[string][]time.Duration
}

func (t *stepTable) add(steps []proto.Step) {
	if t.gaps == nil {
		t.gaps = map[string][]time.Duration{}
	}
	for i := 1; i < len(steps); i++ {
		name := steps[i].Name
		if _, ok := t.gaps[name]; !ok {
			t.names = append(t.names, name)
		}
		t.gaps[name] = append(t.gaps[name], time.Duration(steps[i].Ns-steps[i-1].Ns))
	}
}

func (t *stepTable) String() string {
	var sb strings.Builder
	for _, name := range t.names {
		fmt.Fprintf(&sb, "  %-24s %8.3f ms\n", name, ms(median(t.gaps[name])))
	}
	return sb.String()
}

func median(d []time.Duration) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	return s[len(s)/2]
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// BenchmarkSpawnOverhead measures spawn to exit of `python3 -c pass` bare,
// under bubblewrap and under sandbox-init with every layer on, interleaved in
// one run so all three see the same machine load, and reports the medians and
// the overheads over bare.
func BenchmarkSpawnOverhead(b *testing.B) {
	bwrap, err := exec.LookPath("bwrap")
	if err != nil {
		b.Fatal("bwrap not found: install Debian's bubblewrap (make deps)")
	}
	trace := conf.Knob("NODEX_DEBUG_SANDBOX_STEPS", conf.OSEnv()) != ""
	e := newTestExecutorWith(b, Config{Slots: 1, TraceSteps: trace})
	spec := Spec{Argv: []string{"/usr/bin/python3", "-c", "pass"}}
	var bare, bw, sb []time.Duration
	steps := stepTable{}
	for i := 0; i < b.N; i++ {
		start := time.Now()
		if err := exec.Command("/usr/bin/python3", "-c", "pass").Run(); err != nil {
			b.Fatal(err)
		}
		bare = append(bare, time.Since(start))

		start = time.Now()
		if out, err := exec.Command(bwrap, bwrapArgs...).CombinedOutput(); err != nil {
			b.Fatalf("bwrap: %v: %s", err, out)
		}
		bw = append(bw, time.Since(start))

		start = time.Now()
		res, err := e.Run(context.Background(), spec)
		if err != nil || res.Reason != ReasonExited || res.ExitCode != 0 {
			b.Fatalf("sandbox run: %v %+v", err, res)
		}
		sb = append(sb, time.Since(start))
		steps.add(res.Steps)
		e.waitIdle()
	}
	if trace {
		b.Log("median time of each sandbox step since the step before:\n" + steps.String())
	}
	mb, mw, ms_ := median(bare), median(bw), median(sb)
	b.ReportMetric(ms(mb), "bare-ms")
	b.ReportMetric(ms(mw), "bwrap-ms")
	b.ReportMetric(ms(ms_), "sandbox-ms")
	b.ReportMetric(ms(mw-mb), "bwrap-overhead-ms")
	b.ReportMetric(ms(ms_-mb), "sandbox-overhead-ms")
	b.ReportMetric(float64(ms_-mb)/float64(mw-mb), "sandbox/bwrap-overhead")
	b.ReportMetric(0, "ns/op")
}

// BenchmarkThroughput measures short runs per second with two slots, the
// two cores of the reference machine.
func BenchmarkThroughput(b *testing.B) {
	e := newTestExecutor(b, 2)
	spec := Spec{Argv: []string{"/usr/bin/python3", "-c", "pass"}}
	var next atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for next.Add(1) <= int64(b.N) {
				if res, err := e.Run(context.Background(), spec); err != nil || res.ExitCode != 0 {
					b.Errorf("run: %v %+v", err, res)
					return
				}
			}
		}()
	}
	wg.Wait()
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "runs/s")
}
