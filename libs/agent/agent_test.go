package agent_test

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/nodexsec/nodex/libs/agent"
	"github.com/nodexsec/nodex/libs/identity"
	"github.com/nodexsec/nodex/libs/stack"
)

func startStack(t *testing.T) *stack.Stack {
	t.Helper()
	s, err := stack.Start(context.Background(), stack.Config{
		Dir: t.TempDir(), HeartbeatInterval: 200 * time.Millisecond,
	})
	if err != nil {
		t.Fatalf("starting stack: %v", err)
	}
	t.Cleanup(s.Close)

	return s
}

func TestOpenFromCredsFile(t *testing.T) {
	ctx := context.Background()
	s := startStack(t)

	a, err := agent.Open(ctx, agent.Config{
		URL: s.URL(), CredsFile: s.CredsPath(identity.DemoAgentID),
	})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	defer a.Close(ctx)

	if got := a.ID(); got != identity.DemoAgentID {
		t.Errorf("ID() = %q, want %q", got, identity.DemoAgentID)
	}
}

func TestOpenRejectsMissingSettings(t *testing.T) {
	ctx := context.Background()
	if _, err := agent.Open(ctx, agent.Config{URL: "nats://127.0.0.1:1"}); err == nil {
		t.Error("Open without credentials succeeded")
	}
	_, err := agent.Open(ctx, agent.Config{CredsFile: t.TempDir() + "/missing.creds"})
	if err == nil || !strings.Contains(err.Error(), "missing.creds") {
		t.Errorf("Open with a missing file: error %v, want one naming the file", err)
	}
}

// TestRetrieveKeyWithoutKeyvault checks that a request no service serves
// fails instead of hanging.
func TestRetrieveKeyWithoutKeyvault(t *testing.T) {
	ctx := context.Background()
	s := startStack(t)
	a, err := agent.Open(ctx, agent.Config{
		URL: s.URL(), CredsFile: s.CredsPath(identity.DemoAgentID),
	})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	defer a.Close(ctx)

	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	if _, err := a.RetrieveKey(ctx, "openai-main", "test"); err == nil {
		t.Fatal("RetrieveKey succeeded with no keyvault running")
	}
}

func TestKeyPrintsNoValue(t *testing.T) {
	k := agent.Key{Name: "openai-main", Provider: "openai", Version: 2, Value: "sk-secret-value"}
	var logged strings.Builder
	slog.New(slog.NewTextHandler(&logged, nil)).Info("key", "key", k)

	outputs := map[string]string{
		"%v":  fmt.Sprintf("%v", k),
		"%+v": fmt.Sprintf("%+v", k),
		"%#v": fmt.Sprintf("%#v", k),
		//lint:ignore S1025 the test checks the %s verb itself
		"%s":  fmt.Sprintf("%s", k),
		"log": logged.String(),
	}
	for verb, out := range outputs {
		if strings.Contains(out, "sk-secret-value") {
			t.Errorf("%s output contains the key value: %s", verb, out)
		}
	}
}
