package corpus

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nodexsec/nodex/libs/agent"
	"github.com/nodexsec/nodex/libs/identity"
	"github.com/nodexsec/nodex/libs/party"
	"github.com/nodexsec/nodex/services/nodex/devrun"
)

// system is a running in-process deployment and an operator connected to it.
type system struct {
	home  string
	url   string
	op    *party.Party
	admin *identity.Admin
	seq   atomic.Int64
}

// startSystem runs devrun until the test ends, with only warnings logged:
// a corpus run makes thousands of requests.
func startSystem(t *testing.T) *system {
	t.Helper()
	home := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan string, 1)
	done := make(chan error, 1)
	go func() {
		done <- devrun.Run(ctx, devrun.Config{
			Home: home, Port: 0, Log: testLog(t, slog.LevelWarn), SandboxInit: sandboxInit,
			Ready: func(url string) { ready <- url },
		})
	}()
	var url string
	select {
	case url = <-ready:
	case err := <-done:
		cancel()
		t.Fatalf("devrun failed to start: %v", err)
	case <-time.After(90 * time.Second):
		cancel()
		t.Fatal("devrun not ready after 90s")
	}
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("devrun stopped with: %v", err)
			}
		case <-time.After(30 * time.Second):
			t.Error("devrun did not stop within 30s")
		}
	})

	s := &system{home: home, url: url}
	creds, err := identity.LoadCreds(filepath.Join(home, "identities", "creds",
		identity.OperatorID+".creds"))
	if err != nil {
		t.Fatal(err)
	}
	s.op, err = party.Open(ctx, party.Config{URL: url, Creds: creds})
	if err != nil {
		t.Fatalf("opening operator: %v", err)
	}
	t.Cleanup(func() { _ = s.op.Close(context.Background()) })
	setup, err := identity.Bootstrap(filepath.Join(home, "identities"))
	if err != nil {
		t.Fatal(err)
	}
	kv, err := s.op.JS.KeyValue(ctx, identity.Bucket)
	if err != nil {
		t.Fatal(err)
	}
	s.admin = identity.NewAdmin(kv, setup.Root)

	return s
}

// newAgent creates a fresh agent identity with the plain agent role and
// connects as it. prefix names the batch, such as "corpus-benign".
func (s *system) newAgent(ctx context.Context, prefix string) (*agent.Agent, error) {
	id := fmt.Sprintf("%s-%d", prefix, s.seq.Add(1))
	creds, err := s.admin.Create(ctx, id, identity.KindAgent, []string{identity.RoleAgent})
	if err != nil {
		return nil, fmt.Errorf("creating agent %s: %w", id, err)
	}

	// The broker authorizes a connection from its own view of the registry,
	// which receives a new identity a moment after the write.
	var lastErr error
	for range 50 {
		a, err := agent.Open(ctx, agent.Config{URL: s.url, Creds: creds})
		if err == nil {
			return a, nil
		}
		lastErr = err
		time.Sleep(200 * time.Millisecond)
	}

	return nil, lastErr
}

// contained reports whether the registry, as the operator sees it, shows
// identity id suspended or revoked.
func (s *system) contained(id string) bool {
	ident, err := s.op.View.Identity(id)
	if err != nil {
		return false
	}

	return ident.Status == identity.StatusSuspended || ident.Status == identity.StatusRevoked
}

// sandboxInit is the sandbox-init binary that TestMain builds, since the
// sandbox-runner starts every run through it.
var sandboxInit string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "nodex-corpus-")
	if err != nil {
		panic(err)
	}
	// The runner executes sandbox-init as an unprivileged per-slot host uid,
	// so the folder must be searchable by others.
	if err := os.Chmod(dir, 0o755); err != nil {
		panic(err)
	}
	sandboxInit = filepath.Join(dir, "sandbox-init")
	build := exec.Command("go", "build", "-o", sandboxInit, "./cmd/sandbox-init")
	build.Dir = filepath.Join("..", "..", "services", "sandbox-runner")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "building sandbox-init: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	_ = os.RemoveAll(dir)
	os.Exit(code)
}

// testLog returns a logger that writes through t.Log from level on.
func testLog(t *testing.T, level slog.Level) *slog.Logger {
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: level}))
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(b []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(b)))
	return len(b), nil
}
