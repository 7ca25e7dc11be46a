package agent_test

import (
	"context"
	"fmt"
	"log"

	"github.com/nodexsec/nodex/libs/agent"
)

// Example submits a Python program, runs it in the sandbox and retrieves a
// provider key, as the demo agent of a running `nodex dev`.
func Example() {
	ctx := context.Background()
	a, err := agent.Open(ctx, agent.Config{
		URL:       "nats://127.0.0.1:4222",
		CredsFile: ".nodex/identities/creds/agent-demo.creds",
	})
	if err != nil {
		log.Fatal(err)
	}
	defer a.Close(ctx)

	res, err := a.Run(ctx, agent.Submission{
		Language:   "python",
		Entrypoint: "main.py",
		Files:      []agent.SourceFile{{Name: "main.py", Content: "print('hello')\n"}},
	})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Print(res.Exec.Stdout)

	key, err := a.RetrieveKey(ctx, "openai-main", "summarise the report")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(key) // prints the metadata only; key.Value is the secret
}

// ExampleAgent_Start queues a run in the sandbox's work queue and waits
// for its result.
func ExampleAgent_Start() {
	ctx := context.Background()
	a, err := agent.Open(ctx, agent.Config{
		URL: "nats://127.0.0.1:4222", CredsFile: ".nodex/identities/creds/agent-demo.creds",
	})
	if err != nil {
		log.Fatal(err)
	}
	defer a.Close(ctx)

	job, err := a.Start(ctx, agent.Submission{
		Language: "sh", Entrypoint: "run.sh",
		Files: []agent.SourceFile{{Name: "run.sh", Content: "echo done\n"}},
	})
	if err != nil {
		log.Fatal(err)
	}
	res, err := job.Wait(ctx)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(res.Exec.ExitCode)
}
