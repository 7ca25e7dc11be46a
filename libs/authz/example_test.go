package authz_test

import (
	"context"
	"fmt"
	"time"

	"github.com/nodexsec/nodex/libs/authz"
)

func ExampleEngine_Decide() {
	e := authz.New(authz.Options{})
	err := e.Load(context.Background(), authz.PolicySet{
		Revision: "example",
		Modules: map[string]string{"authz.rego": `package nodex.authz

decision := {"allow": true, "reasons": ["operators may list keys"]} if {
	input.subject.status == "active"
	"operator" in input.subject.roles
	input.action == "list"
} else := {"allow": false, "reasons": ["not allowed"]}
`},
	})
	if err != nil {
		fmt.Println(err)
		return
	}

	d, err := e.Decide(context.Background(), authz.Input{
		Subject: authz.Subject{ID: "operator-1", Kind: authz.KindOperator,
			Roles: []string{"operator"}, Status: authz.StatusActive},
		Action:   "list",
		Resource: authz.Resource{Type: "key"},
		Context:  authz.Context{Time: time.Now()},
	})
	fmt.Println(d.Allow, d.Reasons, err)

	// Resource ids containing ".." are denied before the policy runs.
	d, _ = e.Decide(context.Background(), authz.Input{
		Subject: authz.Subject{ID: "operator-1", Kind: authz.KindOperator,
			Roles: []string{"operator"}, Status: authz.StatusActive},
		Action:   "get",
		Resource: authz.Resource{Type: "key", ID: "../etc"},
	})
	fmt.Println(d.Allow)
	// Output:
	// true [operators may list keys] <nil>
	// false
}
