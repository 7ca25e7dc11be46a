package identity_test

import (
	"fmt"
	"log"
	"os"

	"github.com/nodexsec/nodex/libs/identity"
)

// ExampleBootstrap creates the state of a development deployment and loads
// the demo agent's credentials file back.
func ExampleBootstrap() {
	dir, err := os.MkdirTemp("", "nodex-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)

	setup, err := identity.Bootstrap(dir)
	if err != nil {
		log.Fatal(err)
	}
	creds, err := identity.LoadCreds(setup.CredsPath(identity.DemoAgentID))
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(len(setup.Creds), "identities;", creds.ID, "is an", creds.Kind)
	// Output: 8 identities; agent-demo is an agent
}
