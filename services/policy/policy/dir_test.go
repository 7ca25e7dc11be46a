package policy_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nodexsec/nodex/services/policy/policy"
)

func TestReadDirDefaultPolicies(t *testing.T) {
	req, err := policy.ReadDir("../policies")
	if err != nil {
		t.Fatalf("ReadDir: %v", err)
	}
	for _, name := range []string{"authz.rego", "authz_test.rego"} {
		if _, ok := req.Modules[name]; !ok {
			t.Errorf("module %s missing; got %d modules", name, len(req.Modules))
		}
	}
	if _, ok := req.Data["nodex"]; !ok {
		t.Error("data.json not loaded")
	}

	// The directory pushes as it is.
	w := start(t)
	var reply policy.PushReply
	if err := w.operator.Request(context.Background(), policy.SubjectPush, policyRole, req,
		&reply); err != nil {
		t.Fatalf("pushing the default directory: %v", err)
	}
	if reply.Tests.Failed != 0 || reply.Tests.Passed < 20 {
		t.Errorf("got %d passed, %d failed tests", reply.Tests.Passed, reply.Tests.Failed)
	}
}

func TestReadDirRejectsNestedData(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "a.rego"), []byte("package a\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(dir, "sub"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "sub", "data.json"), []byte("{}"), 0o600); err != nil {
		t.Fatal(err)
	}

	_, err := policy.ReadDir(dir)
	if err == nil || !strings.Contains(err.Error(), "nested data file") {
		t.Errorf("got %v, want a nested data file error", err)
	}

	if _, err := policy.ReadDir(t.TempDir()); err == nil {
		t.Error("empty directory accepted")
	}
}
