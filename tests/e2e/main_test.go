// Package e2e runs the whole NodeX system in process, as `nodex dev` does,
// and drives it as agents and operators would, checking the effects that
// span services.
package e2e

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nodexsec/nodex/libs/identity"
	"github.com/nodexsec/nodex/libs/party"
	"github.com/nodexsec/nodex/services/nodex/devrun"
)

// system is a running in-process deployment.
type system struct {
	home string
	url  string
}

// startSystem runs devrun in the background until the test ends.
func startSystem(t *testing.T) *system {
	t.Helper()

	return startSystemWith(t, devrun.Config{})
}

// startSystemWith is startSystem with extra settings in cfg; the test
// sets Home, Port, Log, SandboxInit and Ready.
func startSystemWith(t *testing.T, cfg devrun.Config) *system {
	t.Helper()
	home := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan string, 1)
	done := make(chan error, 1)
	var stopped bool
	cfg.Home, cfg.Port, cfg.Log, cfg.SandboxInit = home, 0, testLog(t), sandboxInit
	cfg.Ready = func(url string) { ready <- url }
	go func() {
		done <- devrun.Run(ctx, cfg)
	}()
	t.Cleanup(func() {
		cancel()
		if stopped {
			return
		}
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("devrun stopped with: %v", err)
			}
		case <-time.After(30 * time.Second):
			t.Error("devrun did not stop within 30s")
		}
	})
	select {
	case url := <-ready:
		return &system{home: home, url: url}
	case err := <-done:
		stopped = true
		t.Fatalf("devrun failed to start: %v", err)
	case <-time.After(90 * time.Second):
		t.Fatal("devrun not ready after 90s")
	}

	return nil
}

// credsPath returns the credentials file of a built-in identity.
func (s *system) credsPath(id string) string {
	return filepath.Join(s.home, "identities", "creds", id+".creds")
}

// open connects as the identity whose credentials are at path.
func (s *system) open(t *testing.T, creds *identity.Credentials) *party.Party {
	t.Helper()
	ctx := context.Background()
	p, err := party.Open(ctx, party.Config{URL: s.url, Creds: creds, Log: testLog(t)})
	if err != nil {
		t.Fatalf("opening party %s: %v", creds.ID, err)
	}
	t.Cleanup(func() { _ = p.Close(context.Background()) })

	return p
}

// openBuiltin connects as a built-in identity.
func (s *system) openBuiltin(t *testing.T, id string) *party.Party {
	t.Helper()
	c, err := identity.LoadCreds(s.credsPath(id))
	if err != nil {
		t.Fatal(err)
	}

	return s.open(t, c)
}

// admin returns a registry admin signing with the development root key, as
// `nodex agent` does on the operator's machine.
func (s *system) admin(t *testing.T, op *party.Party) *identity.Admin {
	t.Helper()
	setup, err := identity.Bootstrap(filepath.Join(s.home, "identities"))
	if err != nil {
		t.Fatal(err)
	}
	kv, err := op.JS.KeyValue(context.Background(), identity.Bucket)
	if err != nil {
		t.Fatal(err)
	}

	return identity.NewAdmin(kv, setup.Root)
}

// newAgent creates an agent identity with roles, as an operator would.
func (s *system) newAgent(t *testing.T, op *party.Party, id string, roles ...string) *identity.Credentials {
	t.Helper()
	c, err := s.admin(t, op).Create(context.Background(), id, identity.KindAgent, roles)
	if err != nil {
		t.Fatalf("creating agent %s: %v", id, err)
	}

	return c
}

// eventually polls cond every 50ms until it holds or the deadline passes.
func eventually(t *testing.T, what string, deadline time.Duration, cond func() bool) {
	t.Helper()
	end := time.Now().Add(deadline)
	for time.Now().Before(end) {
		if cond() {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("%s: not true after %s", what, deadline)
}

// fakeOpenAIKey returns a made-up value in the shape of an OpenAI key.
func fakeOpenAIKey() string {
	return "sk-" + strings.Repeat("a1B2", 5) + "T3BlbkFJ" + strings.Repeat("Z9y8", 5)
}

// sandboxInit is the sandbox-init binary that TestMain builds, since the
// sandbox-runner starts every run through it.
var sandboxInit string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "nodex-e2e-")
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

// testLog returns a logger that writes through t.Log.
func testLog(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(b []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(b)))
	return len(b), nil
}
