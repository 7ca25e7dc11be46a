// Package bench measures NodeX end to end: the whole system runs in process,
// as `nodex dev` runs it, and the benchmarks drive it as agents do, each
// next to a bare baseline timed in the same run.
package bench

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

	"github.com/nodexsec/nodex/libs/identity"
	"github.com/nodexsec/nodex/libs/party"
	"github.com/nodexsec/nodex/services/nodex/devrun"
)

// sandboxInit is the sandbox-init binary that TestMain builds, since the
// sandbox-runner starts every run through it.
var sandboxInit string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "nodex-bench-")
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

// system is a running in-process deployment.
type system struct {
	home string
	url  string
}

// startSystem runs devrun until the benchmark ends. Service logs are
// discarded, so that writing them does not add to the latency measured.
func startSystem(b *testing.B) *system {
	b.Helper()
	home := b.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan string, 1)
	done := make(chan error, 1)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	go func() {
		done <- devrun.Run(ctx, devrun.Config{
			Home: home, Port: 0, Log: log, SandboxInit: sandboxInit,
			Ready: func(url string) { ready <- url },
		})
	}()
	select {
	case url := <-ready:
		b.Cleanup(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					b.Errorf("devrun stopped with: %v", err)
				}
			case <-time.After(30 * time.Second):
				b.Error("devrun did not stop within 30s")
			}
		})

		return &system{home: home, url: url}
	case err := <-done:
		cancel()
		b.Fatalf("devrun failed to start: %v", err)
	case <-time.After(90 * time.Second):
		cancel()
		b.Fatal("devrun not ready after 90s")
	}

	return nil
}

// credsPath returns the credentials file of a built-in identity.
func (s *system) credsPath(id string) string {
	return filepath.Join(s.home, "identities", "creds", id+".creds")
}

// newAgents creates n agent identities with the demo agent's role, as an
// operator would with `nodex agent create`, signing registry entries with the
// development root key.
func (s *system) newAgents(b *testing.B, n int) []*identity.Credentials {
	b.Helper()
	ctx := context.Background()
	creds, err := identity.LoadCreds(s.credsPath(identity.OperatorID))
	if err != nil {
		b.Fatal(err)
	}
	op, err := party.Open(ctx, party.Config{URL: s.url, Creds: creds})
	if err != nil {
		b.Fatalf("opening operator: %v", err)
	}
	defer func() { _ = op.Close(ctx) }()
	setup, err := identity.Bootstrap(filepath.Join(s.home, "identities"))
	if err != nil {
		b.Fatal(err)
	}
	kv, err := op.JS.KeyValue(ctx, identity.Bucket)
	if err != nil {
		b.Fatal(err)
	}
	admin := identity.NewAdmin(kv, setup.Root)
	out := make([]*identity.Credentials, n)
	for i := range out {
		id := fmt.Sprintf("agent-bench-%d", i)
		if out[i], err = admin.Create(ctx, id, identity.KindAgent, []string{identity.RoleAgent}); err != nil {
			b.Fatalf("creating agent %s: %v", id, err)
		}
	}

	return out
}
