package cli

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nodexsec/nodex/services/nodex/devrun"
)

// nodexBin is the nodex binary built for tests that run nodex dev in a
// process of its own; sandbox-init lies beside it.
var nodexBin string

// devHome is the state folder of the stack that every test in this package
// shares; TestMain starts it once, since a start takes seconds.
var devHome string

func TestMain(m *testing.M) {
	os.Exit(runWithStack(m))
}

func runWithStack(m *testing.M) int {
	home, err := os.MkdirTemp("", "nodex-cli-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "creating state folder:", err)
		return 1
	}
	defer os.RemoveAll(home)
	devHome = home

	binDir, err := os.MkdirTemp("", "nodex-cli-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "creating binary folder:", err)
		return 1
	}
	defer os.RemoveAll(binDir)
	initPath, err := buildSandboxInit(binDir)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	nodexBin = filepath.Join(binDir, "nodex")
	build := exec.Command("go", "build", "-o", nodexBin,
		"github.com/nodexsec/nodex/services/nodex/cmd/nodex")
	if out, err := build.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "building nodex: %v\n%s", err, out)
		return 1
	}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ready := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		done <- devrun.Run(ctx, devrun.Config{
			Home: home, Port: 0, MetricsAddr: "127.0.0.1:0", SandboxInit: initPath, Log: testLog(),
			Ready: func(string) { close(ready) },
		})
	}()
	select {
	case <-ready:
	case err := <-done:
		fmt.Fprintln(os.Stderr, "starting nodex dev:", err)
		return 1
	case <-time.After(2 * time.Minute):
		fmt.Fprintln(os.Stderr, "nodex dev not ready after 2 minutes")
		return 1
	}

	// NOTE: the stack is not stopped before the process exits. A graceful
	// stop races in libs/bus: Client.Drain waits on the in-flight
	// WaitGroup while a JetStream consumer callback (the incident
	// service's threat consumer) still calls Add, which the race detector
	// reports and which can panic with "WaitGroup is reused".
	return m.Run()
}

// buildSandboxInit builds the static sandbox-init binary that the
// sandbox-runner starts for each run, into dir. The sandboxed program runs
// as another user, so dir must be world-searchable.
func buildSandboxInit(dir string) (string, error) {
	if err := os.Chmod(dir, 0o755); err != nil {
		return "", fmt.Errorf("opening %s to the sandbox user: %w", dir, err)
	}
	path := filepath.Join(dir, "sandbox-init")
	cmd := exec.Command("go", "build", "-o", path,
		"github.com/nodexsec/nodex/services/sandbox-runner/cmd/sandbox-init")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("building sandbox-init: %v\n%s", err, out)
	}

	return path, nil
}

// result is one command run.
type result struct {
	out, err string
	code     int
}

// nodex runs the command line args against the shared stack with stdin
// as standard input. The environment is empty, so only --home applies.
func nodex(t *testing.T, stdin string, args ...string) result {
	t.Helper()

	return nodexAt(t, devHome, stdin, args...)
}

// nodexAt runs args against the deployment whose state folder is home.
func nodexAt(t *testing.T, home, stdin string, args ...string) result {
	t.Helper()
	var out, errOut bytes.Buffer
	full := append([]string{"--home", home}, args...)
	code := Main(context.Background(), full,
		Stdio{In: strings.NewReader(stdin), Out: &out, Err: &errOut},
		func(string) string { return "" })

	return result{out: out.String(), err: errOut.String(), code: code}
}

// mustRun runs args and fails the test unless the exit code is want.
func mustRun(t *testing.T, want int, stdin string, args ...string) result {
	t.Helper()
	r := nodex(t, stdin, args...)
	if r.code != want {
		t.Fatalf("nodex %s: exit code %d, want %d\nstdout: %s\nstderr: %s",
			strings.Join(args, " "), r.code, want, r.out, r.err)
	}

	return r
}

// testLog returns the logger of the shared stack: warnings and errors to
// stderr, so a failing test shows what a service reported.
func testLog() *slog.Logger {
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
}

func TestUnknownCommandUsageError(t *testing.T) {
	cases := []struct {
		args []string
		want string
	}{
		{[]string{"bogus"}, `unknown command "bogus" for "nodex"`},
		{[]string{"kyes"}, "Did you mean this?\n\tkeys"},
		{[]string{"keys", "bogus"}, `unknown command "bogus" for "nodex keys"`},
		{[]string{"keys", "lst"}, "\tlist\n"},
		{[]string{"incidents", "open", "inc-1"}, `unknown command "open" for "nodex incidents"`},
	}
	for _, c := range cases {
		r := nodex(t, "", c.args...)
		if r.code != ExitUsage {
			t.Errorf("nodex %s: exit code %d, want %d", strings.Join(c.args, " "), r.code, ExitUsage)
		}
		if !strings.Contains(r.err, c.want) {
			t.Errorf("nodex %s: stderr = %q, want %q", strings.Join(c.args, " "), r.err, c.want)
		}
	}

	r := mustRun(t, ExitOK, "", "keys")
	if !strings.Contains(r.out, "Available Commands") {
		t.Errorf("nodex keys: stdout = %q, want the group's help", r.out)
	}
}
