package e2e

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/nodexsec/nodex/libs/errs"
	"github.com/nodexsec/nodex/libs/identity"
	"github.com/nodexsec/nodex/libs/party"
)

// The bodies below follow schemas/codesec and the sandbox-runner's exec
// reply; the test decodes replies into maps so that it checks the wire form.

type file struct {
	Name    string `json:"name"`
	Content string `json:"content"`
}

type submitRequest struct {
	Language   string `json:"language"`
	Files      []file `json:"files"`
	Entrypoint string `json:"entrypoint"`
}

// submitAndRun submits one Python file as agent and runs the sealed bundle.
func submitAndRun(t *testing.T, agent *party.Party, code string) (map[string]any, error) {
	t.Helper()
	ctx := context.Background()
	var sub map[string]any
	err := agent.Bus.Request(ctx, "nodex.v1.codesec.submit", "service:codesec", submitRequest{
		Language: "python", Entrypoint: "main.py",
		Files: []file{{Name: "main.py", Content: code}},
	}, &sub)
	if err != nil {
		return nil, err
	}
	id, _ := sub["bundle_id"].(string)
	if id == "" {
		t.Fatalf("submit reply has no bundle_id: %v", sub)
	}
	var res map[string]any
	err = agent.Bus.Request(ctx, "nodex.v1.sandbox.exec", "service:sandbox",
		map[string]string{"bundle_id": id}, &res)

	return res, err
}

// TestRunHelloThroughSandbox is the main job: an agent's program is checked,
// sealed, run in the sandbox, and its output comes back.
func TestRunHelloThroughSandbox(t *testing.T) {
	sys := startSystem(t)
	agent := sys.openBuiltin(t, identity.DemoAgentID)

	res, err := submitAndRun(t, agent, "print('hello from the sandbox')\n")
	if err != nil {
		t.Fatalf("running hello: %v", err)
	}
	if got := res["stdout"]; got != "hello from the sandbox\n" {
		t.Errorf("stdout = %q, want the program's line", got)
	}
	if code, _ := res["exit_code"].(float64); code != 0 {
		t.Errorf("exit_code = %v, want 0 (reply %v)", code, res)
	}
	if res["receipt"] == nil {
		t.Error("run has no signed receipt")
	}
}

// TestHostileCodeRefusedOrContained submits code that reads a host file and
// opens a socket: codesec refuses it, or the sandbox contains it.
func TestHostileCodeRefusedOrContained(t *testing.T) {
	sys := startSystem(t)
	agent := sys.openBuiltin(t, identity.DemoAgentID)

	code := "import socket\ns = socket.socket(socket.AF_INET, socket.SOCK_STREAM)\n" +
		"s.connect(('127.0.0.1', 9))\nprint(open('/etc/shadow').read())\n"
	res, err := submitAndRun(t, agent, code)
	if err != nil {
		if !errors.Is(err, errs.CodeRefused) {
			t.Fatalf("hostile submission: err = %v, want code_refused or a contained run", err)
		}
		return
	}
	out, _ := res["stdout"].(string)
	if strings.Contains(out, "root:") {
		t.Fatalf("sandbox leaked /etc/shadow: %q", out)
	}
	if code, _ := res["exit_code"].(float64); code == 0 {
		t.Errorf("hostile run exited 0: %v", res)
	}
}
