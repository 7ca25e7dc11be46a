package main

import (
	"bytes"
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nodexsec/nodex/libs/agent"
	"github.com/nodexsec/nodex/services/nodex/internal/cli"
)

// BenchmarkRunHello measures the whole path of a trivial Python program
// (submit to codesec, policy, sandbox run, reply) with 1, 4 and 16
// agents running at once, each with its own identity. It reports the
// median and 99th percentile latency, the runs per second, the failed
// runs and how often the SDK retried a run after sandbox_busy.
func BenchmarkRunHello(b *testing.B) {
	for _, n := range []int{1, 4, 16} {
		b.Run(fmt.Sprintf("agents=%d", n), func(b *testing.B) { benchmarkRuns(b, n) })
	}
}

func benchmarkRuns(b *testing.B, agents int) {
	home, url := startStack(&testing.T{})
	ctx := context.Background()
	clients := make([]*agent.Agent, agents)
	for i := range clients {
		clients[i] = openBenchAgent(b, home, url, i)
	}
	sub := agent.Submission{Language: "python", Entrypoint: "main.py",
		Files: []agent.SourceFile{{Name: "main.py", Content: "print('hi')\n"}}}

	var mu sync.Mutex
	var latencies []time.Duration
	failures := 0
	next := make(chan struct{})
	var wg sync.WaitGroup
	b.ResetTimer()
	start := time.Now()
	for _, a := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range next {
				t0 := time.Now()
				res, err := a.Run(ctx, sub)
				d := time.Since(t0)
				mu.Lock()
				if err != nil || res.Exec.Stdout != "hi\n" {
					failures++
				} else {
					latencies = append(latencies, d)
				}
				mu.Unlock()
			}
		}()
	}
	for range b.N {
		next <- struct{}{}
	}
	close(next)
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()

	reportLatencies(b, latencies, failures, elapsed)
	var retries uint64
	for _, a := range clients {
		retries += a.BusyStats().Retries
	}
	b.ReportMetric(float64(retries), "busy_retries")
}

func reportLatencies(b *testing.B, lat []time.Duration, failures int, elapsed time.Duration) {
	if len(lat) == 0 {
		b.Fatalf("no run succeeded (%d failures)", failures)
	}
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Milliseconds()), "p50-ms")
	b.ReportMetric(float64(lat[(len(lat)*99)/100].Milliseconds()), "p99-ms")
	b.ReportMetric(float64(len(lat))/elapsed.Seconds(), "runs/s")
	b.ReportMetric(float64(failures), "failures")
}

// openBenchAgent creates agent i's identity and connects as it.
func openBenchAgent(b *testing.B, home, url string, i int) *agent.Agent {
	dir := b.TempDir()
	name := fmt.Sprintf("bench-%d-%d", time.Now().UnixNano()%1e6, i)
	var out, errOut bytes.Buffer
	code := cli.Main(context.Background(),
		[]string{"--home", home, "agent", "create", name, "--out", dir},
		cli.Stdio{In: strings.NewReader(""), Out: &out, Err: &errOut},
		func(string) string { return "" })
	if code != 0 {
		b.Fatalf("creating %s: %s", name, errOut.String())
	}
	a, err := agent.Open(context.Background(), agent.Config{URL: url,
		CredsFile: filepath.Join(dir, name+".creds")})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { a.Close(context.Background()) })

	return a
}
