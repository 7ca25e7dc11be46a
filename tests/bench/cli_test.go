package bench

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// nodexBinary is the CLI that `make build` writes.
var nodexBinary = filepath.Join("..", "..", "bin", "nodex")

// BenchmarkNodexRunCLI measures the `bin/nodex run hello.py` command as a
// user types it, one run after another: process start, loading the
// credentials, connecting, waiting for the verified registry view, then the
// same path as BenchmarkNodexRun. bare_python3 is timed in the same run.
func BenchmarkNodexRunCLI(b *testing.B) {
	bin, err := filepath.Abs(nodexBinary)
	if err != nil {
		b.Fatal(err)
	}
	if _, err := os.Stat(bin); err != nil {
		b.Fatalf("nodex CLI not found at %s: run make build first: %v", bin, err)
	}
	sys := startSystem(b)
	warmUp(b, sys)
	program := filepath.Join(b.TempDir(), "hello.py")
	if err := os.WriteFile(program, []byte("pass\n"), 0o600); err != nil {
		b.Fatal(err)
	}

	var bareP50 time.Duration
	b.Run("bare_python3", func(b *testing.B) {
		bareP50 = timeCommand(b, "/usr/bin/python3", "-c", "pass")
	})
	b.Run("nodex_run", func(b *testing.B) {
		p50 := timeCommand(b, bin, "run", "--home", sys.home, "--server", sys.url, program)
		b.ReportMetric(float64(p50)/float64(bareP50), "p50/bare")
	})
}

// timeCommand runs the command b.N times, reports p50, p99 and runs/s, and
// returns the p50.
func timeCommand(b *testing.B, name string, args ...string) time.Duration {
	samples := make([]time.Duration, 0, b.N)
	start := time.Now()
	for range b.N {
		var stderr bytes.Buffer
		cmd := exec.Command(name, args...)
		cmd.Stderr = &stderr
		t0 := time.Now()
		if err := cmd.Run(); err != nil {
			b.Fatalf("running %s: %v\n%s", name, err, stderr.Bytes())
		}
		samples = append(samples, time.Since(t0))
	}

	return reportLatencies(b, samples, time.Since(start))
}
