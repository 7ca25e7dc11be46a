package app

import (
	"context"
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nodexsec/nodex/libs/bundle"
	"github.com/nodexsec/nodex/services/codesec/internal/domain"
	"github.com/nodexsec/nodex/services/codesec/internal/scan"
)

// program2KiB returns a benign Python program of exactly 2048 bytes.
func program2KiB() string {
	var b strings.Builder
	b.WriteString("import json\n\ndef score(values):\n    total = 0\n")
	for i := 0; b.Len() < 2000; i++ {
		b.WriteString("    total += sum(v * 2 for v in values if v > 0)  # step\n")
	}
	b.WriteString("print(json.dumps(score([1, 2])))\n")
	s := b.String()
	if len(s) < 2048 {
		s += strings.Repeat("#", 2047-len(s)) + "\n"
	}

	return s[:2048]
}

// reportLatency adds p50 and p99 (in microseconds) and submissions per
// second to the benchmark output.
func reportLatency(b *testing.B, samples []time.Duration, total time.Duration) {
	if len(samples) == 0 {
		return
	}
	slices.Sort(samples)
	at := func(q float64) float64 {
		return float64(samples[int(q*float64(len(samples)-1))].Microseconds())
	}
	b.ReportMetric(at(0.50), "p50-µs")
	b.ReportMetric(at(0.99), "p99-µs")
	b.ReportMetric(float64(len(samples))/total.Seconds(), "submissions/s")
}

// BenchmarkSubmitFullPath measures one 2 KiB submission through
// validation, the rules, the shipped policy in OPA, sealing and the
// JetStream object store (embedded server, file storage, fsync on every
// write). The bus and its envelopes are not included.
func BenchmarkSubmitFullPath(b *testing.B) {
	f := newFixture(b, nil)
	body, err := json.Marshal(domain.Submission{Language: "python", Entrypoint: "main.py",
		Files: []domain.SourceFile{{Name: "main.py", Content: program2KiB()}}})
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	samples := make([]time.Duration, 0, b.N)
	b.ResetTimer()

	start := time.Now()
	for b.Loop() {
		t0 := time.Now()
		sub, err := domain.ParseSubmission(body)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := f.svc.Submit(ctx, agent, sub, ""); err != nil {
			b.Fatal(err)
		}
		samples = append(samples, time.Since(t0))
	}
	reportLatency(b, samples, time.Since(start))
}

// BenchmarkScan2KiB measures the rule scan alone on the same program.
func BenchmarkScan2KiB(b *testing.B) {
	s, err := scan.NewDefault()
	if err != nil {
		b.Fatal(err)
	}
	files := []bundle.File{{Name: "main.py", Data: []byte(program2KiB())}}
	b.ReportAllocs()

	for b.Loop() {
		if _, err := s.Scan("python", files); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkSeal2KiB measures sealing alone: AES-256-GCM, the HPKE key
// seal and the Ed25519 signature.
func BenchmarkSeal2KiB(b *testing.B) {
	f := newFixture(b, nil)
	recipient, err := f.runnerKey.Recipient(context.Background())
	if err != nil {
		b.Fatal(err)
	}
	signer := bundle.SignerFromCreds(f.setup.Creds["codesec"])
	now := time.Now()
	m := bundle.Manifest{ID: "b-bench", Language: "python", Entrypoint: "main.py",
		Author: agent.ID, Created: now, Expires: now.Add(time.Hour)}
	contents := bundle.Contents{Files: []bundle.File{{Name: "main.py", Data: []byte(program2KiB())}}}
	b.ReportAllocs()

	for b.Loop() {
		if _, _, err := bundle.Seal(m, contents, signer, recipient); err != nil {
			b.Fatal(err)
		}
	}
}
