package cli

import (
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// shippedPolicyDir returns the folder of the default policy set.
func shippedPolicyDir(t *testing.T) string {
	t.Helper()
	_, file, _, _ := runtime.Caller(0)
	dir := filepath.Join(filepath.Dir(file), "..", "..", "..", "policy", "policies")
	if _, err := os.Stat(filepath.Join(dir, "authz.rego")); err != nil {
		t.Fatalf("shipped policy set: %v", err)
	}

	return dir
}

func TestPolicyTestAndPushShippedSet(t *testing.T) {
	dir := shippedPolicyDir(t)
	r := mustRun(t, ExitOK, "", "policy", "test", dir)
	if !strings.Contains(r.out, " 0 failed") {
		t.Errorf("policy test output = %q, want 0 failed", r.out)
	}
	r = mustRun(t, ExitOK, "", "policy", "push", dir)
	if !strings.Contains(r.out, "now deciding with policy@") {
		t.Errorf("policy push output = %q, want the active revision", r.out)
	}
}

func TestPolicyBrokenSetRejected(t *testing.T) {
	dir := t.TempDir()
	bad := "package nodex.authz\n\nimport rego.v1\n\nallow if {\n"
	if err := os.WriteFile(filepath.Join(dir, "authz.rego"), []byte(bad), 0o600); err != nil {
		t.Fatal(err)
	}
	r := mustRun(t, ExitDenied, "", "policy", "test", dir)
	if !strings.Contains(r.out, "does not compile") {
		t.Errorf("policy test output = %q, want a compile error", r.out)
	}
	mustRun(t, ExitDenied, "", "policy", "push", dir)
	mustRun(t, ExitUsage, "", "policy", "push", t.TempDir())
}

func TestPolicyDecide(t *testing.T) {
	allow := `{"subject":{"id":"agent-demo","kind":"agent","roles":["agent"],"status":"active"},
		"action":"submit","resource":{"type":"code"},"context":{}}`
	r := mustRun(t, ExitOK, allow, "policy", "decide")
	if !strings.HasPrefix(r.out, "allow") {
		t.Errorf("decide output = %q, want allow", r.out)
	}
	deny := `{"subject":{"id":"agent-demo","kind":"agent","roles":["agent"],"status":"active"},
		"action":"retrieve","resource":{"type":"key","id":"k1"},"context":{"provider":"openai"}}`
	r = mustRun(t, ExitDenied, deny, "--json", "policy", "decide", "--input", "-")
	if !strings.Contains(r.out, `"allow": false`) {
		t.Errorf("decide --json output = %q, want allow false", r.out)
	}
	mustRun(t, ExitUsage, `{"subjekt":{}}`, "policy", "decide")
}

func TestPolicyRoleAddAndBind(t *testing.T) {
	role := `{"description":"reads reports","kinds":["agent"],
		"permissions":[{"resource":"incident","actions":["list"]}]}`
	r := mustRun(t, ExitOK, role, "policy", "role", "add", "cli-report-reader", "--file", "-")
	if !strings.Contains(r.out, "added role cli-report-reader") {
		t.Errorf("role add output = %q", r.out)
	}
	mustRun(t, ExitError, role, "policy", "role", "add", "cli-report-reader", "--file", "-")
	mustRun(t, ExitOK, role, "policy", "role", "add", "cli-report-reader", "--file", "-",
		"--replace")

	r = mustRun(t, ExitOK, "", "policy", "role", "bind", "cli-reporter", "cli-report-reader")
	if !strings.Contains(r.out, "cli-reporter now has roles: cli-report-reader") {
		t.Errorf("role bind output = %q", r.out)
	}
	mustRun(t, ExitNotFound, "", "policy", "role", "bind", "cli-reporter", "cli-no-such-role")
	mustRun(t, ExitOK, "", "policy", "role", "bind", "cli-reporter", "cli-report-reader", "--unbind")
}
