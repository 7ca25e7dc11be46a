package policies

import (
	"context"
	"testing"
	"time"

	"github.com/nodexsec/nodex/libs/authz"
	"github.com/nodexsec/nodex/services/policy/internal/casefile"
)

// TestDecisionCases runs every case in testdata/cases through libs/authz with
// the default policies and roles.
func TestDecisionCases(t *testing.T) {
	cases, err := casefile.Load("testdata/cases")
	if err != nil {
		t.Fatal(err)
	}
	if len(cases) == 0 {
		t.Fatal("no decision cases found in testdata/cases")
	}
	modules, err := Modules()
	if err != nil {
		t.Fatal(err)
	}
	base, err := RBAC()
	if err != nil {
		t.Fatal(err)
	}

	for _, c := range cases {
		t.Run(c.Name, func(t *testing.T) {
			rbac := c.RBAC(base)
			if err := rbac.Validate(); err != nil {
				t.Fatalf("case role data invalid: %v", err)
			}
			data, err := authz.WithRBAC(nil, rbac)
			if err != nil {
				t.Fatal(err)
			}
			e := authz.New(authz.Options{Timeout: 10 * time.Second})
			set := authz.PolicySet{Revision: "case", Modules: modules, Data: data}
			if err := e.Load(context.Background(), set); err != nil {
				t.Fatalf("loading default policies: %v", err)
			}

			d, err := e.Decide(context.Background(), c.Input)
			if problem := c.Want.Check(d, err); problem != "" {
				t.Errorf("%s: %s", c.Note, problem)
			}
		})
	}
}
