package sandbox_test

import (
	"context"
	"log/slog"
	"slices"
	"testing"
	"time"

	"github.com/nodexsec/nodex/services/sandbox-runner/internal/app"
	"github.com/nodexsec/nodex/services/sandbox-runner/internal/executor"
	"github.com/nodexsec/nodex/services/sandbox-runner/internal/ports/busport"
	"github.com/nodexsec/nodex/services/sandbox-runner/internal/proto"
)

func medianMs(d []time.Duration) float64 {
	s := slices.Clone(d)
	slices.Sort(s)
	return float64(s[len(s)/2]) / float64(time.Millisecond)
}

// settle pauses after a measurement so that the executors' background work
// (an init's exit, the cgroup removal and the preparation of the next init,
// about 15 ms of wall time) lands outside the next measurement.
func settle() { time.Sleep(50 * time.Millisecond) }

// BenchmarkServicePath measures exec over the bus (fetch, verify, policy,
// decrypt, cgroup setup, run, redaction, receipt signing and storage) against
// the same program run directly on an executor, interleaved in one run.
func BenchmarkServicePath(b *testing.B) {
	w := startWorld(b)
	ctx := context.Background()
	const code = "print('hi')"
	id := w.seal(b, code)
	ex, err := executor.New(executor.Config{InitPath: initPath, Slots: 1, HostIDBase: testIDBase + 16,
		Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = ex.Close() })
	spec := executor.Spec{Runtime: executor.RuntimePython, Entrypoint: "main.py", Modules: []string{},
		Files: []proto.File{{Path: "main.py", Data: []byte(code)}}}
	var direct, service []time.Duration
	for i := 0; i < b.N; i++ {
		start := time.Now()
		if res, err := ex.Run(ctx, spec); err != nil || res.ExitCode != 0 {
			b.Fatalf("direct run: %v %+v", err, res)
		}
		direct = append(direct, time.Since(start))
		settle()

		start = time.Now()
		var rep app.ExecReply
		if err := w.agent.Bus.Request(ctx, busport.SubjectExec, "service:sandbox",
			app.ExecRequest{BundleID: id}, &rep); err != nil || rep.ExitCode != 0 {
			b.Fatalf("exec: %v %+v", err, rep)
		}
		service = append(service, time.Since(start))
		settle()
	}
	b.ReportMetric(medianMs(direct), "executor-ms")
	b.ReportMetric(medianMs(service), "service-ms")
	b.ReportMetric(medianMs(service)-medianMs(direct), "service-overhead-ms")
	b.ReportMetric(0, "ns/op")
}
