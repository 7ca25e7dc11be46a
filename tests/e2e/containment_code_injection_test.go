package e2e

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/nodexsec/nodex/libs/errs"
	"github.com/nodexsec/nodex/libs/identity"
	"github.com/nodexsec/nodex/libs/party"
)

// limitedSubmit is a codesec submission with explicit run limits.
type limitedSubmit struct {
	Language   string         `json:"language"`
	Files      []file         `json:"files"`
	Entrypoint string         `json:"entrypoint"`
	Limits     map[string]int `json:"limits"`
}

// submit seals one Python file as agent, with a wall time limit, and returns
// the bundle id.
func submit(t *testing.T, agent *party.Party, code string, wallMillis int) string {
	t.Helper()
	var sub map[string]any
	err := agent.Bus.Request(context.Background(), "nodex.v1.codesec.submit", "service:codesec",
		limitedSubmit{Language: "python", Entrypoint: "main.py",
			Files:  []file{{Name: "main.py", Content: code}},
			Limits: map[string]int{"wall_time_ms": wallMillis}}, &sub)
	if err != nil {
		t.Fatalf("submitting: %v", err)
	}
	id, _ := sub["bundle_id"].(string)
	if id == "" {
		t.Fatalf("submit reply has no bundle_id: %v", sub)
	}

	return id
}

// execBundle runs a sealed bundle as agent and returns the exec reply.
func execBundle(agent *party.Party, bundleID string) (map[string]any, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var res map[string]any
	err := agent.Bus.Request(ctx, "nodex.v1.sandbox.exec", "service:sandbox",
		map[string]string{"bundle_id": bundleID}, &res)

	return res, err
}

// TestSandboxEscapeRevokesAndKills follows a code injection. An agent has a
// long-running program in the sandbox when it queues a second program that
// opens a socket. The sandbox blocks it and reports a violation (the
// socket import, or the socket call), monitor raises CODE_INJECTION, and
// incident revokes the second bundle and kills the agent's sandboxes. Both
// hold: the running program ends as killed, and the revoked bundle no longer
// runs.
//
// The second program goes through the job queue because the runner serves
// nodex.v1.sandbox.exec one request at a time: a second exec would wait for
// the first to end.
func TestSandboxEscapeRevokesAndKills(t *testing.T) {
	sys := startSystem(t)
	op := sys.openBuiltin(t, identity.OperatorID)
	agent := sys.openNew(t, sys.newAgent(t, op, "agent-inject", identity.RoleAgent))

	sleeper := submit(t, agent, "import time\nfor _ in range(200):\n    time.sleep(0.05)\n"+
		"print('finished')\n", 10_000)
	hostile := submit(t, agent, "import socket\n"+
		"s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)\n"+
		"s.connect(('127.0.0.1', 9))\n", 5_000)

	type outcome struct {
		res map[string]any
		err error
	}
	long := make(chan outcome, 1)
	started := time.Now()
	go func() {
		res, err := execBundle(agent, sleeper)
		long <- outcome{res, err}
	}()
	// Give the runner time to start the long run before the violation.
	time.Sleep(time.Second)

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	job := map[string]string{"job_id": "hostile-" + hostile, "bundle_id": hostile}
	if _, err := agent.Bus.PublishJob(ctx, "nodex.v1.sandbox.jobs", "service:sandbox", job,
		time.Now().Add(time.Minute)); err != nil {
		t.Fatalf("queueing the socket program: %v", err)
	}

	inc := waitContained(t, op, "CODE_INJECTION", "agent-inject", 60*time.Second)
	if !hasAction(inc, "revoke_bundle", hostile) {
		t.Errorf("incident %s did not revoke bundle %s: %+v", inc.ID, hostile, inc.Actions)
	}
	if !hasAction(inc, "kill_sandboxes", "agent-inject") {
		t.Errorf("incident %s did not kill the agent's sandboxes: %+v", inc.ID, inc.Actions)
	}

	select {
	case o := <-long:
		if o.err != nil {
			t.Fatalf("long-running exec: %v", o.err)
		}
		if o.res["reason"] != "killed" {
			t.Errorf("long-running exec reason = %v after %s, want killed (reply %v)",
				o.res["reason"], time.Since(started), o.res)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("long-running exec still running 30s after containment")
	}

	_, err := execBundle(agent, hostile)
	if !errors.Is(err, errs.BundleRevoked) {
		t.Errorf("exec of the revoked bundle: err = %v, want bundle_revoked", err)
	}
}
