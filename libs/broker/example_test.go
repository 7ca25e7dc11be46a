package broker_test

import (
	"context"
	"fmt"
	"log"
	"os"
	"time"

	"github.com/nodexsec/nodex/libs/broker"
	"github.com/nodexsec/nodex/libs/identity"
)

// Example starts the embedded server on a fresh state folder, publishes the
// bootstrap identities and connects as the demo agent.
func Example() {
	ctx := context.Background()
	dir, err := os.MkdirTemp("", "nodex-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)

	setup, err := identity.Bootstrap(dir + "/identities")
	if err != nil {
		log.Fatal(err)
	}
	b, err := broker.Start(ctx, broker.Config{
		DataDir: dir, Root: setup.Root.Public(), Authority: &setup.Authority,
	})
	if err != nil {
		log.Fatal(err)
	}
	defer b.Shutdown()
	if err := setup.Publish(ctx, b.Registry()); err != nil {
		log.Fatal(err)
	}
	// The broker's view picks the records up through its KV watch.
	for {
		if _, err := b.View().Active(identity.DemoAgentID); err == nil {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}

	nc, err := broker.Connect(ctx, b.ClientURL(), setup.Creds[identity.DemoAgentID])
	if err != nil {
		log.Fatal(err)
	}
	defer nc.Close()
	fmt.Println("connected as", nc.Opts.Name)
	// Output: connected as agent-demo
}
