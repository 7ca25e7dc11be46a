package keyvault_test

import (
	"context"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/nodexsec/nodex/libs/testkit"
	"github.com/nodexsec/nodex/services/keyvault/api"
	"github.com/nodexsec/nodex/services/keyvault/internal/kek"
	"github.com/nodexsec/nodex/services/keyvault/internal/sealing"
	"github.com/nodexsec/nodex/services/keyvault/keyvault"
)

// reportLatency adds p50 and p99 in microseconds and operations per second.
func reportLatency(b *testing.B, samples []time.Duration, total time.Duration) {
	b.Helper()
	if len(samples) == 0 {
		return
	}
	slices.Sort(samples)
	b.ReportMetric(float64(samples[len(samples)/2])/1e3, "p50_us")
	b.ReportMetric(float64(samples[len(samples)*99/100])/1e3, "p99_us")
	b.ReportMetric(float64(len(samples))/total.Seconds(), "ops/s")
}

func measure(b *testing.B, op func() error) {
	b.Helper()
	samples := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	start := time.Now()
	for b.Loop() {
		t0 := time.Now()
		if err := op(); err != nil {
			b.Fatal(err)
		}
		samples = append(samples, time.Since(t0))
	}
	reportLatency(b, samples, time.Since(start))
}

// BenchmarkRetrieve compares one retrieve through the full path (bus
// envelope both ways, policy, usage and quota update, audit event persisted
// with fsync, decrypt) with a bare NATS request/reply of the same size and
// with the bare envelope decrypt.
func BenchmarkRetrieve(b *testing.B) {
	ctx := context.Background()
	srv := testkit.NATSServer(b)
	w := newWorld(b, srv)
	w.start(b, keyvault.Config{RatePerSecond: -1, DailyQuota: -1})
	value := fake(b, "openai")
	var stored api.StoreReply
	if err := w.operator.Request(ctx, api.SubjectStore, api.Role, api.StoreRequest{
		Provider: "openai", Name: "bench", Value: value}, &stored); err != nil {
		b.Fatal(err)
	}

	b.Run("full_path", func(b *testing.B) {
		measure(b, func() error {
			var got api.RetrieveReply
			return w.agent.Request(ctx, api.SubjectRetrieve, api.Role,
				api.RetrieveRequest{Name: "bench", Purpose: "bench"}, &got)
		})
	})

	b.Run("raw_nats", func(b *testing.B) {
		nc := testkit.Connect(b, srv)
		payload := make([]byte, 256)
		sub, err := nc.Subscribe("bench.echo", func(m *nats.Msg) { _ = m.Respond(payload) })
		if err != nil {
			b.Fatal(err)
		}
		defer sub.Unsubscribe()
		client := testkit.Connect(b, srv)
		measure(b, func() error {
			_, err := client.Request("bench.echo", payload[:64], 5*time.Second)
			return err
		})
	})

	b.Run("bare_decrypt", func(b *testing.B) {
		path := filepath.Join(b.TempDir(), "kek")
		if err := kek.GenerateFile(path); err != nil {
			b.Fatal(err)
		}
		ring, err := kek.LoadFile(path)
		if err != nil {
			b.Fatal(err)
		}
		bind := sealing.Binding{Name: "bench", Provider: "openai", Version: 1}
		sealed, err := sealing.Seal(ctx, ring, bind, value.Reveal())
		if err != nil {
			b.Fatal(err)
		}
		measure(b, func() error {
			_, err := sealing.Open(ctx, ring, bind, sealed)
			return err
		})
	})
}
