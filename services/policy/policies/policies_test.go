package policies

import (
	"context"
	"testing"
	"time"

	"github.com/nodexsec/nodex/services/policy/internal/regotest"
)

func TestRegoUnitTests(t *testing.T) {
	modules, err := Modules()
	if err != nil {
		t.Fatalf("loading modules: %v", err)
	}
	data, err := Data()
	if err != nil {
		t.Fatalf("loading data: %v", err)
	}

	rep, err := regotest.Run(context.Background(), modules, data, 10*time.Second)
	if err != nil {
		t.Fatalf("running Rego tests: %v", err)
	}
	if len(rep.Results) < 20 {
		t.Errorf("ran %d Rego tests, want at least 20", len(rep.Results))
	}
	for _, r := range rep.Results {
		if !r.Pass {
			t.Errorf("%s (%s) failed: %s", r.Name, r.Location, r.Error)
		}
	}
}

func TestDefaultRBACValid(t *testing.T) {
	rbac, err := RBAC()
	if err != nil {
		t.Fatalf("loading default roles: %v", err)
	}

	for _, name := range []string{"agent", "operator", "service:codesec", "service:sandbox",
		"service:keyvault", "service:policy", "service:monitor", "service:incident"} {
		if _, ok := rbac.Roles[name]; !ok {
			t.Errorf("default role %q missing", name)
		}
	}
}
