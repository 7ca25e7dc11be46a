//go:build deploy

package deploy

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/nodexsec/nodex/libs/identity"
	"github.com/nodexsec/nodex/libs/testkit"
	"github.com/nodexsec/nodex/services/nodex/devrun"
)

// BenchmarkDeployment measures, in one run: nodex run latency on the
// embedded default (nodex dev in process, before the containers start)
// and through the compose cluster, and acknowledged KV writes at
// replication 1 and 3 beside the embedded single server (testkit, fsync
// on every write like the broker). make bench-deploy runs it.
func BenchmarkDeployment(b *testing.B) {
	d := newDeployment(b)
	b.Run("nodex_run_embedded", func(b *testing.B) { benchRunEmbedded(b, d) })
	d.up(b)
	b.Run("nodex_run", func(b *testing.B) { benchRun(b, d) })
	_, js := d.operator(b, clientURL)
	for _, r := range []int{1, 3} {
		b.Run(fmt.Sprintf("kv_put_cluster_R%d", r), func(b *testing.B) { benchPut(b, js, r) })
	}
	b.Run("kv_put_embedded_R1", func(b *testing.B) {
		srv := testkit.NATSServer(b)
		benchPut(b, testkit.JetStream(b, srv), 1)
	})
}

// benchRunEmbedded times nodex run against nodex dev's in-process stack
// with its embedded server, started only for this benchmark.
func benchRunEmbedded(b *testing.B, d *deployment) {
	// The runner executes sandbox-init as a per-slot host uid, so it is
	// copied into a folder that others may search.
	dir, err := os.MkdirTemp("", "nodex-bench-deploy-")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		b.Fatal(err)
	}
	initBin, err := os.ReadFile(filepath.Join(d.dir, ".build", "sandbox-runner", "sandbox-init"))
	if err != nil {
		b.Fatalf("%v: run make images first", err)
	}
	sandboxInit := filepath.Join(dir, "sandbox-init")
	if err := os.WriteFile(sandboxInit, initBin, 0o755); err != nil {
		b.Fatal(err)
	}
	home := filepath.Join(dir, "home")
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan string, 1)
	done := make(chan error, 1)
	go func() {
		done <- devrun.Run(ctx, devrun.Config{
			Home: home, Port: 0, Log: slog.New(slog.DiscardHandler), SandboxInit: sandboxInit,
			Ready: func(url string) { ready <- url },
		})
	}()
	var url string
	select {
	case url = <-ready:
	case err := <-done:
		cancel()
		b.Fatalf("nodex dev stack did not start: %v", err)
	case <-time.After(90 * time.Second):
		cancel()
		b.Fatal("nodex dev stack not ready after 90s")
	}
	defer func() {
		cancel()
		if err := <-done; err != nil {
			b.Errorf("nodex dev stack stopped with: %v", err)
		}
	}()

	f := filepath.Join(b.TempDir(), "prog.py")
	if err := os.WriteFile(f, []byte("print(1)\n"), 0o600); err != nil {
		b.Fatal(err)
	}
	var lat []time.Duration
	failed := 0
	b.ResetTimer()
	for b.Loop() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		start := time.Now()
		_, err := run(ctx, d.nodex, "run", "--home", home, "--server", url, f)
		cancel()
		if err != nil {
			b.Logf("run failed: %v", err)
			failed++
			continue
		}
		lat = append(lat, time.Since(start))
	}
	b.ReportMetric(float64(failed), "failed_runs")
	reportLatency(b, lat)
}

func benchRun(b *testing.B, d *deployment) {
	f := filepath.Join(b.TempDir(), "prog.py")
	if err := os.WriteFile(f, []byte("print(1)\n"), 0o600); err != nil {
		b.Fatal(err)
	}
	var lat []time.Duration
	failed := 0
	b.ResetTimer()
	for b.Loop() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		start := time.Now()
		_, err := d.nodexCmd(ctx, d.creds(identity.DemoAgentID), "run", f)
		cancel()
		if err != nil {
			// A failed run is counted, not timed, so that one timeout does
			// not hide the latency of the others.
			b.Logf("run failed: %v", err)
			failed++
			continue
		}
		lat = append(lat, time.Since(start))
	}
	b.ReportMetric(float64(failed), "failed_runs")
	reportLatency(b, lat)
}

func benchPut(b *testing.B, js jetstream.JetStream, replicas int) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	name := fmt.Sprintf("BENCH_R%d", replicas)
	kv, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket: name, Replicas: replicas, Storage: jetstream.FileStorage,
	})
	if err != nil {
		b.Fatal(err)
	}
	defer func() { _ = js.DeleteKeyValue(context.Background(), name) }()
	value := make([]byte, 256)
	var lat []time.Duration
	i := 0
	b.ResetTimer()
	for b.Loop() {
		i++
		start := time.Now()
		if _, err := kv.Put(ctx, fmt.Sprintf("k%d", i), value); err != nil {
			b.Fatal(err)
		}
		lat = append(lat, time.Since(start))
	}
	b.StopTimer()
	// The brokers raise every stream below three replicas within seconds,
	// so the count at the end shows whether an R1 figure stayed R1.
	if s, err := js.Stream(ctx, "KV_"+name); err == nil {
		b.ReportMetric(float64(s.CachedInfo().Config.Replicas), "replicas_at_end")
	}
	reportLatency(b, lat)
}

func reportLatency(b *testing.B, lat []time.Duration) {
	if len(lat) == 0 {
		return
	}
	slices.Sort(lat)
	p := func(q float64) float64 {
		return float64(lat[int(q*float64(len(lat)-1))].Microseconds()) / 1000
	}
	b.ReportMetric(p(0.5), "p50_ms")
	b.ReportMetric(p(0.99), "p99_ms")
}
