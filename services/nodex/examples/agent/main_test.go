package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nodexsec/nodex/libs/agent"
	"github.com/nodexsec/nodex/services/nodex/devrun"
	"github.com/nodexsec/nodex/services/nodex/internal/cli"
)

// testKey has the shape of a legacy OpenAI user key, which the keyvault's
// format check accepts; it is no real key.
const testKey = "sk-AbCdEfGhIjKlMnOpQrStT3BlbkFJAbCdEfGhIjKlMnOpQrSt"

// TestExampleAgent runs the example against a real nodex dev: submit, run,
// event report and key retrieval, as an agent created with
// key-reader:openai.
func TestExampleAgent(t *testing.T) {
	home, url := startStack(t)
	nodex := func(stdin string, args ...string) string {
		t.Helper()
		var out, errOut bytes.Buffer
		code := cli.Main(context.Background(), append([]string{"--home", home}, args...),
			cli.Stdio{In: strings.NewReader(stdin), Out: &out, Err: &errOut},
			func(string) string { return "" })
		if code != 0 {
			t.Fatalf("nodex %v: exit %d: %s", args, code, errOut.String())
		}
		return out.String()
	}
	nodex(testKey, "keys", "store", "openai-main", "--provider", "openai")
	credsDir := t.TempDir()
	nodex("", "agent", "create", "example-agent", "--role", "key-reader:openai", "--out", credsDir)

	var out bytes.Buffer
	cfg := config{server: url, creds: filepath.Join(credsDir, "example-agent.creds"),
		key: "openai-main"}
	if err := run(context.Background(), cfg, &out); err != nil {
		t.Fatalf("run: %v\noutput: %s", err, out.String())
	}
	got := out.String()
	for _, want := range []string{"connected as example-agent", "hello from the sandbox",
		"exited, exit 0", "(agent.run_finished, severity info)",
		"retrieved key openai-main (provider openai, version 1)"} {
		if !strings.Contains(got, want) {
			t.Errorf("output lacks %q:\n%s", want, got)
		}
	}
	if strings.Contains(got, testKey) {
		t.Error("output contains the key value")
	}
}

var (
	stackOnce           sync.Once
	stackHome, stackURL string
	stackErr            error
)

// startStack returns the nodex dev that the tests of this package share,
// starting it on first use.
func startStack(t *testing.T) (home, url string) {
	t.Helper()
	stackOnce.Do(func() { stackHome, stackURL, stackErr = runStack() })
	if stackErr != nil {
		t.Fatal(stackErr)
	}

	return stackHome, stackURL
}

// runStack runs nodex dev in this process on a fresh state folder. The
// folders stay until the process exits, since the stack keeps using them.
func runStack() (home, url string, err error) {
	home, err = os.MkdirTemp("", "nodex-example-home-")
	if err != nil {
		return "", "", err
	}
	binDir, err := os.MkdirTemp("", "nodex-example-bin-")
	if err != nil {
		return "", "", err
	}
	if err := os.Chmod(binDir, 0o755); err != nil {
		return "", "", err
	}
	initPath := filepath.Join(binDir, "sandbox-init")
	build := exec.Command("go", "build", "-o", initPath,
		"github.com/nodexsec/nodex/services/sandbox-runner/cmd/sandbox-init")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := build.CombinedOutput(); err != nil {
		return "", "", fmt.Errorf("building sandbox-init: %v\n%s", err, b)
	}

	// NOTE: the stack is left running until the test process exits, since
	// stopping it can race in libs/bus Client.Drain.
	ready := make(chan string, 1)
	done := make(chan error, 1)
	go func() {
		done <- devrun.Run(context.Background(), devrun.Config{
			Home: home, Port: 0, MetricsAddr: "127.0.0.1:0", SandboxInit: initPath,
			Ready: func(u string) { ready <- u },
		})
	}()
	select {
	case url = <-ready:
		return home, url, nil
	case err := <-done:
		return "", "", fmt.Errorf("starting nodex dev: %w", err)
	case <-time.After(2 * time.Minute):
		return "", "", errors.New("nodex dev not ready after 2 minutes")
	}
}

// TestAgentStartQueuesJob runs two programs through the sandbox's work
// queue and matches each result to its job.
func TestAgentStartQueuesJob(t *testing.T) {
	home, url := startStack(t)
	ctx := context.Background()
	a, err := agent.Open(ctx, agent.Config{
		URL: url, CredsFile: filepath.Join(home, "identities", "creds", "agent-demo.creds"),
	})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	defer a.Close(ctx)

	var jobs []*agent.Job
	for i := range 2 {
		job, err := a.Start(ctx, agent.Submission{
			Language: "sh", Entrypoint: "run.sh",
			Files: []agent.SourceFile{{Name: "run.sh", Content: fmt.Sprintf("echo job %d\n", i)}},
		})
		if err != nil {
			t.Fatalf("Start %d: %v", i, err)
		}
		jobs = append(jobs, job)
	}
	wait, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	for i, job := range jobs {
		res, err := job.Wait(wait)
		if err != nil {
			t.Fatalf("job %d: %v", i, err)
		}
		if want := fmt.Sprintf("job %d\n", i); res.Exec.Stdout != want {
			t.Errorf("job %d stdout = %q, want %q", i, res.Exec.Stdout, want)
		}
		if res.Submit.BundleID != res.Exec.BundleID {
			t.Errorf("job %d ran bundle %s, want %s", i, res.Exec.BundleID, res.Submit.BundleID)
		}
	}
}
