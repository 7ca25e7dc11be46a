package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nodexsec/nodex/services/nodex/devrun"
	"github.com/nodexsec/nodex/services/nodex/internal/cli"
)

// testKey has the shape of a legacy OpenAI user key, which the keyvault's
// format check accepts; it is no real key.
const testKey = "sk-AbCdEfGhIjKlMnOpQrStT3BlbkFJAbCdEfGhIjKlMnOpQrSt"

// TestExampleAgent runs the example against a real nodex dev: submit, run
// and key retrieval, as an agent created with key-reader:openai.
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
		"exited, exit 0", "retrieved key openai-main (provider openai, version 1)"} {
		if !strings.Contains(got, want) {
			t.Errorf("output lacks %q:\n%s", want, got)
		}
	}
	if strings.Contains(got, testKey) {
		t.Error("output contains the key value")
	}
}

// startStack runs nodex dev in this process on a fresh state folder.
func startStack(t *testing.T) (home, url string) {
	t.Helper()
	home = t.TempDir()
	binDir, err := os.MkdirTemp("", "nodex-example-bin-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(binDir) })
	if err := os.Chmod(binDir, 0o755); err != nil {
		t.Fatal(err)
	}
	initPath := filepath.Join(binDir, "sandbox-init")
	build := exec.Command("go", "build", "-o", initPath,
		"github.com/nodexsec/nodex/services/sandbox-runner/cmd/sandbox-init")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building sandbox-init: %v\n%s", err, b)
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
	case err := <-done:
		t.Fatalf("starting nodex dev: %v", err)
	case <-time.After(2 * time.Minute):
		t.Fatal(fmt.Errorf("nodex dev not ready after 2 minutes"))
	}

	return home, url
}
