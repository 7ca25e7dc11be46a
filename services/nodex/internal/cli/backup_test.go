package cli

import (
	"bufio"
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"
)

// devProcess is a nodex dev running in a process of its own.
type devProcess struct {
	cmd  *exec.Cmd
	home string
}

// startDev runs `nodex dev` on home and waits until it serves.
func startDev(t *testing.T, home string) *devProcess {
	t.Helper()
	cmd := exec.Command(nodexBin, "--home", home, "dev", "--port", "0",
		"--metrics-addr", "127.0.0.1:0", "--log-level", "error")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting nodex dev: %v", err)
	}
	ready := make(chan bool, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if strings.HasPrefix(sc.Text(), "NodeX is running") {
				ready <- true
			}
		}
		ready <- false
	}()
	select {
	case ok := <-ready:
		if !ok {
			_ = cmd.Wait()
			t.Fatalf("nodex dev stopped before it served: %s", stderr.String())
		}
	case <-time.After(2 * time.Minute):
		_ = cmd.Process.Kill()
		t.Fatal("nodex dev not ready after 2 minutes")
	}

	return &devProcess{cmd: cmd, home: home}
}

// stop interrupts nodex dev and waits for it to exit.
func (d *devProcess) stop(t *testing.T) {
	t.Helper()
	_ = d.cmd.Process.Signal(syscall.SIGINT)
	done := make(chan error, 1)
	go func() { done <- d.cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Logf("nodex dev exited with %v", err)
		}
	case <-time.After(time.Minute):
		_ = d.cmd.Process.Kill()
		t.Fatal("nodex dev did not stop within a minute of SIGINT")
	}
}

// snapshot is what the round trip compares: the state as the commands
// show it.
type snapshot struct {
	keyValue  string
	keys      []string
	agents    []string
	incidents []string
	events    int
	threats   []string
}

func takeSnapshot(t *testing.T, home string) snapshot {
	t.Helper()
	var s snapshot
	s.keyValue = mustRunAt(t, home, ExitOK, "", "keys", "get", "bk-key").out

	var keys struct {
		Keys []struct {
			Name string `json:"name"`
		} `json:"keys"`
	}
	decode(t, mustRunAt(t, home, ExitOK, "", "--json", "keys", "list").out, &keys)
	for _, k := range keys.Keys {
		s.keys = append(s.keys, k.Name)
	}

	var ids []struct {
		ID     string `json:"id"`
		Status string `json:"status"`
	}
	decode(t, mustRunAt(t, home, ExitOK, "", "--json", "agent", "list").out, &ids)
	for _, id := range ids {
		s.agents = append(s.agents, id.ID+":"+id.Status)
	}

	var incidents incidentListReply
	decode(t, mustRunAt(t, home, ExitOK, "", "--json", "incidents", "list").out, &incidents)
	for _, in := range incidents.Incidents {
		s.incidents = append(s.incidents, in.ID+":"+in.Type)
	}

	out := mustRunAt(t, home, ExitOK, "", "--json", "events", "tail", "--limit", "10000").out
	s.events = strings.Count(out, "\n")

	var threats threatsReply
	decode(t, mustRunAt(t, home, ExitOK, "", "--json", "threats", "list").out, &threats)
	for _, th := range threats.Threats {
		s.threats = append(s.threats, th.ID)
	}
	for _, list := range [][]string{s.keys, s.agents, s.incidents, s.threats} {
		sort.Strings(list)
	}

	return s
}

func decode(t *testing.T, out string, v any) {
	t.Helper()
	if err := json.Unmarshal([]byte(out), v); err != nil {
		t.Fatalf("decoding %q: %v", out, err)
	}
}

func mustRunAt(t *testing.T, home string, want int, stdin string, args ...string) result {
	t.Helper()
	r := nodexAt(t, home, stdin, args...)
	if r.code != want {
		t.Fatalf("nodex %s: exit code %d, want %d\nstdout: %s\nstderr: %s",
			strings.Join(args, " "), r.code, want, r.out, r.err)
	}

	return r
}

// TestBackupRestoreRoundTrip populates a nodex dev, backs it up, loses the
// store, restores it and checks that every key, identity, incident, threat
// and event is back.
func TestBackupRestoreRoundTrip(t *testing.T) {
	home := filepath.Join(t.TempDir(), "home")
	dev := startDev(t, home)
	mustRunAt(t, home, ExitOK, testKeyValue, "keys", "store", "bk-key", "--provider", "openai")
	mustRunAt(t, home, ExitOK, "", "agent", "create", "bk-agent", "--out", t.TempDir())
	mustRunAt(t, home, ExitOK, "", "agent", "suspend", "bk-agent")
	hello := writeProgram(t, "hello.py", "print('hi')\n")
	mustRunAt(t, home, ExitOK, "", "run", hello)
	evil := writeProgram(t, "evil.py", "import os\nos.system('id')\n")
	mustRunAt(t, home, ExitRunRefused, "", "run", evil)
	waitFor(t, func() bool {
		r := nodexAt(t, home, "", "incidents", "list")
		return strings.Contains(r.out, "CODE_INJECTION")
	})
	before := takeSnapshot(t, home)
	t.Logf("before backup: %d keys, %d identities, %d incidents, %d threats, %d events",
		len(before.keys), len(before.agents), len(before.incidents), len(before.threats),
		before.events)
	dev.stop(t)

	file := filepath.Join(t.TempDir(), "nodex.backup")
	r := mustRunAt(t, home, ExitOK, "", "backup", file)
	if !strings.Contains(r.out, "encrypted to operator") {
		t.Errorf("backup output = %q", r.out)
	}
	raw, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(raw, []byte(testKeyValue)) || bytes.Contains(raw, []byte("bk-agent")) {
		t.Error("backup file contains plaintext state")
	}
	info, _ := os.Stat(file)
	if info.Mode().Perm() != 0o600 {
		t.Errorf("backup file mode = %o, want 600", info.Mode().Perm())
	}

	mustRunAt(t, home, ExitError, "", "restore", file)
	for _, p := range []string{"jetstream", "keyvault.kek"} {
		if err := os.RemoveAll(filepath.Join(home, p)); err != nil {
			t.Fatal(err)
		}
	}
	mustRunAt(t, home, ExitOK, "", "restore", file)

	dev = startDev(t, home)
	defer dev.stop(t)
	after := takeSnapshot(t, home)
	checkSnapshot(t, before, after)
}

func checkSnapshot(t *testing.T, before, after snapshot) {
	t.Helper()
	if after.keyValue != before.keyValue {
		t.Error("restored key value differs")
	}
	lists := []struct {
		name          string
		before, after []string
	}{
		{"keys", before.keys, after.keys},
		{"identities", before.agents, after.agents},
		{"incidents", before.incidents, after.incidents},
		{"threats", before.threats, after.threats},
	}
	for _, l := range lists {
		if strings.Join(l.before, ",") != strings.Join(l.after, ",") {
			t.Errorf("restored %s = %v, want %v", l.name, l.after, l.before)
		}
	}
	// The restarted services add their own events, so the count may grow.
	if after.events < before.events {
		t.Errorf("restored events = %d, want at least %d", after.events, before.events)
	}
}

func TestRestoreRejectsOtherDeployment(t *testing.T) {
	home := filepath.Join(t.TempDir(), "home")
	dev := startDev(t, home)
	dev.stop(t)
	file := filepath.Join(t.TempDir(), "nodex.backup")
	mustRunAt(t, home, ExitOK, "", "backup", file)
	r := mustRunAt(t, home, ExitError, "", "backup", file)
	if !strings.Contains(r.err, "exists: pass --force") {
		t.Errorf("backup onto an existing file: stderr = %q, want the --force hint", r.err)
	}

	other := filepath.Join(t.TempDir(), "other")
	dev = startDev(t, other)
	dev.stop(t)
	r = mustRunAt(t, other, ExitError, "", "--creds",
		filepath.Join(home, "identities", "creds", "operator.creds"), "restore", file, "--force")
	if !strings.Contains(r.err, "another root key") {
		t.Errorf("stderr = %q, want the root key mismatch", r.err)
	}

	corrupt := filepath.Join(t.TempDir(), "cut.backup")
	raw, _ := os.ReadFile(file)
	if err := os.WriteFile(corrupt, raw[:len(raw)-10], 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(filepath.Join(home, "jetstream")); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(home, "keyvault.kek")); err != nil {
		t.Fatal(err)
	}
	r = mustRunAt(t, home, ExitError, "", "restore", corrupt)
	if !strings.Contains(r.err, "corrupt") {
		t.Errorf("stderr = %q, want a corrupt backup", r.err)
	}
}
