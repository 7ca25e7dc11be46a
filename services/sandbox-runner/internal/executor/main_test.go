package executor

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// initPath is the sandbox-init binary that TestMain builds for the tests.
var initPath string

func TestMain(m *testing.M) {
	os.Exit(runTests(m))
}

func runTests(m *testing.M) int {
	dir, err := os.MkdirTemp("", "nodex-sandbox-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "creating build folder:", err)
		return 1
	}
	defer os.RemoveAll(dir)
	// The init execs as an unprivileged host id, which must reach the binary.
	if err := os.Chmod(dir, 0o755); err != nil {
		fmt.Fprintln(os.Stderr, "opening build folder:", err)
		return 1
	}
	initPath = filepath.Join(dir, "sandbox-init")
	if err := buildStatic(initPath, "../../cmd/sandbox-init"); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	if err := buildStatic(filepath.Join(dir, "probe"), "./testdata/probe"); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	probeBinary = filepath.Join(dir, "probe")
	return m.Run()
}

func buildStatic(out, pkg string) error {
	cmd := exec.Command("go", "build", "-trimpath", "-o", out, pkg)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("building %s: %v\n%s", pkg, err, b)
	}
	return nil
}

// probeBinary is the static test probe built from testdata/probe.
var probeBinary string

// testIDBase gives this test process its own host ids, 64 of them, apart from
// other test processes that may run the same tests on this machine at the
// same time: slot ids are host-wide, and so are the process counts charged
// to them.
var testIDBase = 1<<21 + (os.Getpid()%8192)*64

func newTestExecutor(t testing.TB, slots int) *Executor {
	t.Helper()
	return newTestExecutorWith(t, Config{Slots: slots})
}

// newTestExecutorWith returns an executor with cfg and the test's init,
// host ids and logger.
func newTestExecutorWith(t testing.TB, cfg Config) *Executor {
	t.Helper()
	cfg.InitPath, cfg.HostIDBase = initPath, testIDBase
	cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	e, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() {
		if err := e.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return e
}

func runSpec(t testing.TB, e *Executor, spec Spec) Result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	res, err := e.Run(ctx, spec)
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	return res
}

func discardLogger() *slog.Logger {
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}
