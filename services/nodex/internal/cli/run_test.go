package cli

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// writeProgram writes a program file into a fresh folder.
func writeProgram(t *testing.T, name, code string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, []byte(code), 0o600); err != nil {
		t.Fatal(err)
	}

	return path
}

func TestRunHelloPython(t *testing.T) {
	path := writeProgram(t, "hello.py", "print('hello from nodex run')\n")
	r := mustRun(t, ExitOK, "", "run", path)
	if r.out != "hello from nodex run\n" {
		t.Errorf("stdout = %q, want the program's line", r.out)
	}
	if !strings.Contains(r.err, "exited 0; cpu ") || !strings.Contains(r.err, "peak memory") {
		t.Errorf("stderr = %q, want the summary line with resource use", r.err)
	}
}

func TestRunPassesExitStatus(t *testing.T) {
	path := writeProgram(t, "fail.sh", "echo partial\nexit 7\n")
	r := mustRun(t, 7, "", "run", path)
	if r.out != "partial\n" {
		t.Errorf("stdout = %q, want partial", r.out)
	}
}

func TestRunJSON(t *testing.T) {
	path := writeProgram(t, "j.py", "import sys\nprint('x')\nsys.exit(3)\n")
	r := mustRun(t, 3, "", "--json", "run", path)
	var res struct {
		Submit struct {
			BundleID string `json:"bundle_id"`
		} `json:"submit"`
		Exec struct {
			Stdout   string `json:"stdout"`
			ExitCode int    `json:"exit_code"`
			Reason   string `json:"reason"`
		} `json:"exec"`
	}
	if err := json.Unmarshal([]byte(r.out), &res); err != nil {
		t.Fatalf("decoding run --json output %q: %v", r.out, err)
	}
	if res.Submit.BundleID == "" {
		t.Error("run --json has no bundle id")
	}
	if res.Exec.Stdout != "x\n" || res.Exec.ExitCode != 3 || res.Exec.Reason != "exited" {
		t.Errorf("run --json exec = %+v, want stdout x, exit 3, reason exited", res.Exec)
	}
}

func TestRunTimeoutStopsProgram(t *testing.T) {
	path := writeProgram(t, "loop.py", "while True:\n    pass\n")
	r := mustRun(t, ExitRunLimit, "", "run", path, "--timeout", "2s")
	if !strings.Contains(r.err, "stopped: ") {
		t.Errorf("stderr = %q, want a stopped summary", r.err)
	}
}

// TestRunHostileCodeRefused submits code that codesec's rules refuse (a
// shell-out through os.system, a critical finding) and checks the refusal
// exit code.
func TestRunHostileCodeRefused(t *testing.T) {
	path := writeProgram(t, "evil.py", "import os\nos.system('cat /etc/shadow')\n")
	r := mustRun(t, ExitRunRefused, "", "run", path)
	if strings.Contains(r.out, "root:") {
		t.Fatalf("run printed host file content: %q", r.out)
	}
	if !strings.Contains(r.err, "refused (code_refused)") {
		t.Errorf("stderr = %q, want the refusal named", r.err)
	}
}

func TestRunBadInput(t *testing.T) {
	mustRun(t, ExitRunError, "", "run", writeProgram(t, "prog.txt", "x"))
	mustRun(t, ExitRunError, "", "run", filepath.Join(t.TempDir(), "missing.py"))
	mustRun(t, ExitUsage, "", "run")
	mustRun(t, ExitUsage, "", "run", "a.py", "--memory", "lots")
}

// TestRunRefusalOpensIncident checks the path a new user follows: a refused
// program raises a threat, and `incidents list` shows the incident. It runs
// as its own agent, so that containment leaves the demo agent alone.
func TestRunRefusalOpensIncident(t *testing.T) {
	out := t.TempDir()
	mustRun(t, ExitOK, "", "agent", "create", "cli-runner", "--out", out)
	creds := filepath.Join(out, "cli-runner.creds")
	path := writeProgram(t, "evil.py", "import os\nos.system('id')\n")
	mustRun(t, ExitRunRefused, "", "--creds", creds, "run", path)

	waitFor(t, func() bool {
		r := nodex(t, "", "incidents", "list", "--identity", "cli-runner")
		return r.code == ExitOK && strings.Contains(r.out, "CODE_INJECTION")
	})
}

func TestRunLimitOutOfRange(t *testing.T) {
	path := writeProgram(t, "hello.py", "print('hello')\n")
	cases := []struct {
		args []string
		want []string
	}{
		{[]string{"--timeout", "1h"}, []string{"--timeout 1h0m0s", "5m0s"}},
		{[]string{"--timeout", "-1s"}, []string{"--timeout -1s"}},
		{[]string{"--memory", "2048"}, []string{"--memory 2048", "1024 MiB"}},
		{[]string{"--memory", "-1"}, []string{"--memory -1"}},
	}
	for _, c := range cases {
		r := mustRun(t, ExitUsage, "", append([]string{"run", path}, c.args...)...)
		for _, want := range c.want {
			if !strings.Contains(r.err, want) {
				t.Errorf("run %v: stderr = %q, want %q", c.args, r.err, want)
			}
		}
	}
}

// TestRunLoweredLimitsNoted relies on the shared stack's sandbox-runner
// defaults of 10 s wall time and 256 MiB memory.
func TestRunLoweredLimitsNoted(t *testing.T) {
	path := writeProgram(t, "hello.py", "print('hello')\n")
	r := mustRun(t, ExitOK, "", "run", path, "--timeout", "60s", "--memory", "512")
	if !strings.Contains(r.err, "lowered --timeout 1m0s to its maximum of 10s") {
		t.Errorf("stderr = %q, want the lowered timeout noted", r.err)
	}
	if !strings.Contains(r.err, "lowered --memory 512 to its maximum of 256 MiB") {
		t.Errorf("stderr = %q, want the lowered memory limit noted", r.err)
	}

	r = mustRun(t, ExitOK, "", "run", path, "--timeout", "5s", "--memory", "128")
	if strings.Contains(r.err, "lowered") {
		t.Errorf("stderr = %q, want no note for limits within the maximum", r.err)
	}
}

func TestRunHelpStatesLimits(t *testing.T) {
	r := mustRun(t, ExitOK, "", "run", "--help")
	for _, want := range []string{"up to 5m0s", "up to 1024 MiB", "-max-wall-time", "seccomp",
		"EPERM"} {
		if !strings.Contains(r.out, want) {
			t.Errorf("run --help lacks %q", want)
		}
	}
	if strings.Contains(r.out, "default and maximum") {
		t.Error("run --help still calls the sandbox default the maximum")
	}
}
