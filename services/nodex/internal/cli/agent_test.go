package cli

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestAgentLifecycle creates an agent with a key-reader role, uses its
// credentials, then suspends, unsuspends and revokes it.
func TestAgentLifecycle(t *testing.T) {
	out := t.TempDir()
	mustRun(t, ExitOK, testKeyValue, "keys", "store", "cli-agent-key", "--provider", "openai")

	r := mustRun(t, ExitOK, "", "agent", "create", "cli-bot", "--role", "key-reader:openai",
		"--out", out)
	creds := filepath.Join(out, "cli-bot.creds")
	if strings.TrimSpace(r.out) != creds {
		t.Errorf("create output = %q, want the path %s", r.out, creds)
	}
	info, err := os.Stat(creds)
	if err != nil {
		t.Fatalf("credentials file: %v", err)
	}
	if mode := info.Mode().Perm(); mode != 0o600 {
		t.Errorf("credentials file mode = %o, want 600", mode)
	}
	mustRun(t, ExitError, "", "agent", "create", "cli-bot", "--out", out)

	r = mustRun(t, ExitOK, "", "agent", "list")
	if !strings.Contains(r.out, "cli-bot") || !strings.Contains(r.out, "key-reader:openai") {
		t.Errorf("list output = %q, want cli-bot with key-reader:openai", r.out)
	}

	get := func(want int) {
		t.Helper()
		r := mustRun(t, want, "", "--creds", creds, "keys", "get", "cli-agent-key")
		if want == ExitOK && r.out != testKeyValue+"\n" {
			t.Errorf("get as cli-bot printed %q, want the value", r.out)
		}
	}
	get(ExitOK)

	r = mustRun(t, ExitOK, "", "agent", "suspend", "cli-bot")
	if !strings.Contains(r.out, "cli-bot is now suspended") {
		t.Errorf("suspend output = %q", r.out)
	}
	waitFor(t, func() bool {
		return nodex(t, "", "--creds", creds, "keys", "get",
			"cli-agent-key").code != ExitOK
	})

	mustRun(t, ExitOK, "", "agent", "unsuspend", "cli-bot")
	waitFor(t, func() bool {
		return nodex(t, "", "--creds", creds, "keys", "get",
			"cli-agent-key").code == ExitOK
	})

	r = mustRun(t, ExitOK, "", "--json", "agent", "revoke", "cli-bot")
	if !strings.Contains(r.out, `"status": "revoked"`) {
		t.Errorf("revoke --json output = %q, want status revoked", r.out)
	}
}

func TestAgentUnknownNotFound(t *testing.T) {
	r := mustRun(t, ExitNotFound, "", "agent", "suspend", "cli-nobody")
	if !strings.Contains(r.err, "cli-nobody") {
		t.Errorf("stderr = %q, want the identity named", r.err)
	}
}

// waitFor polls cond for up to 10 s, since registry changes reach the
// services through their watch.
func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 10s")
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// TestSuspendedAgentRejected checks that a suspended agent's commands fail
// at once with one line that names the likely causes, and that nodex run
// does not retry the rejected connection.
func TestSuspendedAgentRejected(t *testing.T) {
	out := t.TempDir()
	mustRun(t, ExitOK, "", "agent", "create", "cli-suspended", "--out", out)
	creds := filepath.Join(out, "cli-suspended.creds")
	mustRun(t, ExitOK, "", "agent", "suspend", "cli-suspended")

	var r result
	waitFor(t, func() bool {
		r = nodex(t, "", "--creds", creds, "keys", "list")
		return strings.Contains(r.err, "rejected the credentials")
	})
	if r.code != ExitDenied {
		t.Errorf("exit code = %d, want %d (denied)", r.code, ExitDenied)
	}
	if strings.Count(r.err, "\n") != 1 {
		t.Errorf("stderr = %q, want one line", r.err)
	}
	if strings.Count(r.err, "cli-suspended") != 1 {
		t.Errorf("stderr = %q, want the identity named once", r.err)
	}
	for _, want := range []string{"suspended or revoked", "out of date", "nodex agent list"} {
		if !strings.Contains(r.err, want) {
			t.Errorf("stderr = %q, want %q", r.err, want)
		}
	}

	path := writeProgram(t, "hello.py", "print('hello')\n")
	start := time.Now()
	r = mustRun(t, ExitRunRefused, "", "--creds", creds, "run", path)
	// The SDK retries a rejection for 5 s, since one can be transient
	// while a broker node fails over.
	if elapsed := time.Since(start); elapsed > 15*time.Second {
		t.Errorf("nodex run took %s, want it to give up after the SDK's 5 s of retries", elapsed)
	}
	if strings.Count(r.err, "\n") != 1 || !strings.Contains(r.err, "rejected the credentials") {
		t.Errorf("run stderr = %q, want one line saying the credentials were rejected", r.err)
	}
}
