package bench

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nodexsec/nodex/libs/agent"
	"github.com/nodexsec/nodex/libs/identity"
)

// trivialProgram is the program every run submits: it only exits.
var trivialProgram = agent.Submission{
	Language: "python", Entrypoint: "main.py",
	Files: []agent.SourceFile{{Name: "main.py", Content: "pass\n"}},
}

// BenchmarkNodexRun measures `nodex run` of a trivial Python program through
// the whole path (agent SDK, codesec scan, policy decision, sealing, sandbox
// run, signed receipt, reply) with 1, 4 and 16 concurrent agents, each with its
// own identity and connection. bare_python3 times `/usr/bin/python3 -c pass`
// in the same run, and every agents_N case reports its p50 as a multiple of
// that baseline.
// Latency counts from the submit to the run's reply, including the SDK's
// retries after sandbox_busy, which an agent receives when more runs arrive
// than the runner's slots and queue hold (2 and 8 by default).
func BenchmarkNodexRun(b *testing.B) {
	sys := startSystem(b)
	warmUp(b, sys)
	creds := sys.newAgents(b, 16)

	var bareP50 time.Duration
	b.Run("bare_python3", func(b *testing.B) {
		bareP50 = timeCommand(b, "/usr/bin/python3", "-c", "pass")
	})
	for _, n := range []int{1, 4, 16} {
		b.Run(fmt.Sprintf("agents_%d", n), func(b *testing.B) {
			p50 := runConcurrent(b, sys, creds[:n])
			if bareP50 > 0 {
				b.ReportMetric(float64(p50)/float64(bareP50), "p50/bare")
			}
		})
	}
}

// warmUp runs the program once, so that the first timed run does not pay
// for compiling the policy, loading rules or opening streams.
func warmUp(b *testing.B, sys *system) {
	b.Helper()
	a := openAgent(b, sys, nil)
	if _, err := runOnce(context.Background(), a); err != nil {
		b.Fatalf("warm-up run: %v", err)
	}
}

// openAgent connects as the identity of creds, or as the demo agent as
// `nodex run` does when creds is nil.
func openAgent(b *testing.B, sys *system, creds *identity.Credentials) *agent.Agent {
	b.Helper()
	ctx := context.Background()
	cfg := agent.Config{URL: sys.url, Creds: creds}
	if creds == nil {
		cfg.CredsFile = sys.credsPath(identity.DemoAgentID)
	}
	a, err := agent.Open(ctx, cfg)
	if err != nil {
		b.Fatalf("opening agent: %v", err)
	}
	b.Cleanup(func() { _ = a.Close(ctx) })

	return a
}

// runConcurrent makes b.N runs spread over one agent per identity in creds
// and reports their latencies and throughput. It returns the p50.
func runConcurrent(b *testing.B, sys *system, creds []*identity.Credentials) time.Duration {
	agents := make([]*agent.Agent, len(creds))
	for i, c := range creds {
		agents[i] = openAgent(b, sys, c)
	}
	var (
		next     atomic.Int64
		retries  atomic.Int64
		mu       sync.Mutex
		samples  = make([]time.Duration, 0, b.N)
		wg       sync.WaitGroup
		firstErr error
	)
	b.ResetTimer()
	start := time.Now()
	for _, a := range agents {
		wg.Go(func() {
			for next.Add(1) <= int64(b.N) {
				t0 := time.Now()
				busy, err := runOnce(context.Background(), a)
				d := time.Since(t0)
				retries.Add(int64(busy))
				mu.Lock()
				if err != nil && firstErr == nil {
					firstErr = err
				}
				samples = append(samples, d)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()
	if firstErr != nil {
		b.Fatalf("run with %d agents: %v", len(creds), firstErr)
	}
	b.ReportMetric(float64(retries.Load()), "busy_retries")

	return reportLatencies(b, samples, elapsed)
}

// runOnce submits trivialProgram, runs the accepted bundle and checks that
// it exited 0, as agent.Run does. It returns how often the SDK retried the
// run after sandbox_busy.
func runOnce(ctx context.Context, a *agent.Agent) (int, error) {
	sub, err := a.Submit(ctx, trivialProgram)
	if err != nil {
		return 0, err
	}
	res, err := a.Exec(ctx, sub.BundleID)
	if err != nil {
		return 0, err
	}
	if res.ExitCode != 0 {
		return res.BusyRetries, fmt.Errorf("trivial program exited %d, want 0 (reason %q)",
			res.ExitCode, res.Reason)
	}

	return res.BusyRetries, nil
}

// reportLatencies reports p50, p99 and runs/s of samples taken over
// elapsed, and returns the p50.
func reportLatencies(b *testing.B, samples []time.Duration, elapsed time.Duration) time.Duration {
	slices.Sort(samples)
	p50 := samples[len(samples)/2]
	p99 := samples[(len(samples)*99)/100]
	b.ReportMetric(float64(p50.Microseconds())/1e3, "p50_ms")
	b.ReportMetric(float64(p99.Microseconds())/1e3, "p99_ms")
	b.ReportMetric(float64(len(samples))/elapsed.Seconds(), "runs/s")
	b.ReportMetric(0, "ns/op")

	return p50
}
