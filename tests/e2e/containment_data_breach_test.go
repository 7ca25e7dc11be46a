package e2e

import (
	"context"
	"testing"
	"time"

	"github.com/nodexsec/nodex/libs/identity"
)

// TestKeyExfiltrationDisablesKeyAndSuspends follows a data breach. An agent
// allowed to read openai keys retrieves one, then runs a program that tries
// to open a connection out of the sandbox. Monitor's key-read-then-outbound
// rule raises DATA_BREACH, and incident disables the key and suspends the
// agent. Both hold: nobody, the operator included, can retrieve the key, and
// the agent's requests are rejected.
func TestKeyExfiltrationDisablesKeyAndSuspends(t *testing.T) {
	sys := startSystem(t)
	op := sys.openBuiltin(t, identity.OperatorID)
	storeKey(t, op, "openai-leak")
	agent := sys.openNew(t, sys.newAgent(t, op, "agent-leak", identity.RoleAgent,
		"key-reader:openai"))

	if got, err := retrieve(agent, "openai-leak"); err != nil || got.Value == "" {
		t.Fatalf("key reader's retrieve: err = %v, want the value", err)
	}

	// The socket module is declared, so the import is allowed and the
	// connection attempt reaches seccomp, which reports it as network.
	var sub map[string]any
	err := agent.Bus.Request(context.Background(), "nodex.v1.codesec.submit",
		"service:codesec", map[string]any{
			"language": "python", "entrypoint": "main.py", "modules": []string{"socket"},
			"files": []file{{Name: "main.py", Content: "import socket\n" +
				"s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)\n" +
				"s.connect(('127.0.0.1', 9))\n"}},
		}, &sub)
	if err != nil {
		t.Fatalf("submitting the exfiltration program: %v", err)
	}
	bundleID, _ := sub["bundle_id"].(string)
	res, err := execBundle(agent, bundleID)
	if err != nil {
		t.Fatalf("running the exfiltration program: %v", err)
	}
	t.Logf("exfiltration program: reason %v, exit %v, violations %v", res["reason"],
		res["exit_code"], res["violations"])

	inc := waitContained(t, op, "DATA_BREACH", "agent-leak", 60*time.Second)
	if !hasAction(inc, "disable_key_version", "openai-leak") {
		t.Errorf("incident %s did not disable key openai-leak: %+v", inc.ID, inc.Actions)
	}
	if !hasAction(inc, "suspend_identity", "agent-leak") {
		t.Errorf("incident %s did not suspend agent-leak: %+v", inc.ID, inc.Actions)
	}

	got, err := retrieve(op, "openai-leak")
	if err == nil {
		t.Errorf("operator retrieved disabled key openai-leak version %d", got.Version)
	}
	if got.Value != "" {
		t.Error("retrieve of the disabled key returned its value")
	}

	eventually(t, "agent-leak suspended in the registry", 10*time.Second, func() bool {
		id, err := op.View.Identity("agent-leak")
		return err == nil && id.Status == identity.StatusSuspended
	})
	if got, err := retrieve(agent, "openai-leak"); err == nil || got.Value != "" {
		t.Errorf("suspended agent's retrieve: err = %v, value returned = %v", err,
			got.Value != "")
	}
}
