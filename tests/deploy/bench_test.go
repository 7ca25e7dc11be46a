//go:build deploy

package deploy

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/nodexsec/nodex/libs/identity"
	"github.com/nodexsec/nodex/libs/testkit"
)

// BenchmarkDeployment measures, in one run on one deployment: nodex run
// latency and throughput through the cluster, and acknowledged KV writes
// at replication 1 and 3 beside the embedded single server (testkit,
// fsync on every write like the broker). make bench-deploy runs it.
func BenchmarkDeployment(b *testing.B) {
	d := newDeployment(b)
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
