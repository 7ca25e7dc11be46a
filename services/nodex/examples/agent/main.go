// Command agent is a runnable example of a NodeX agent built on libs/agent:
// it submits a Python program, runs it in the sandbox, prints the output
// and resource use, reports a security event of its own to the monitor,
// and retrieves a provider key (printing only its metadata).
//
// Next to a running `nodex dev`, from the same folder:
//
//	go run ./services/nodex/examples/agent --key openai-main
//
// The agent needs role key-reader:<provider> for the key; create one with
// `nodex agent create my-agent --role key-reader:openai` and pass
// --creds my-agent.creds.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strings"

	"github.com/nodexsec/nodex/libs/agent"
	"github.com/nodexsec/nodex/services/nodex/devrun"
)

// program is the code the example runs.
const program = `import sys
print("hello from the sandbox, python", sys.version.split()[0])
`

// config holds the example's settings.
type config struct {
	server, creds, key string
}

func main() {
	home := envOr("NODEX_HOME", ".nodex")
	var cfg config
	flag.StringVar(&cfg.server, "server", os.Getenv("NATS_URL"),
		"NATS server URL (default: the URL nodex dev wrote into NODEX_HOME)")
	flag.StringVar(&cfg.creds, "creds",
		envOr("NODEX_CREDS", filepath.Join(home, "identities", "creds", "agent-demo.creds")),
		"agent credentials file")
	flag.StringVar(&cfg.key, "key", "", "provider key to retrieve (empty: skip key retrieval)")
	flag.Parse()
	if cfg.server == "" {
		b, err := os.ReadFile(filepath.Join(home, devrun.URLFile))
		if err != nil {
			fmt.Fprintln(os.Stderr, "agent: no --server and no running nodex dev:", err)
			os.Exit(2)
		}
		cfg.server = strings.TrimSpace(string(b))
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	err := run(ctx, cfg, os.Stdout)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "agent:", err)
		os.Exit(1)
	}
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}

	return def
}

// run connects as the agent, runs the program and retrieves cfg.key.
func run(ctx context.Context, cfg config, out io.Writer) error {
	a, err := agent.Open(ctx, agent.Config{URL: cfg.server, CredsFile: cfg.creds})
	if err != nil {
		return err
	}
	defer a.Close(context.WithoutCancel(ctx))
	fmt.Fprintf(out, "connected as %s\n", a.ID())

	// Submit first, then run: the verdict is visible before anything runs.
	sub, err := a.Submit(ctx, agent.Submission{
		Language: "python", Entrypoint: "main.py",
		Files: []agent.SourceFile{{Name: "main.py", Content: program}},
	})
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "codesec: %s, bundle %s, %d findings\n", sub.Verdict, sub.BundleID,
		len(sub.Findings))

	res, err := a.Exec(ctx, sub.BundleID)
	if err != nil {
		return err
	}
	fmt.Fprint(out, res.Stdout)
	fmt.Fprint(out, res.Stderr)
	fmt.Fprintf(out, "run %s: %s, exit %d, cpu %d ms, wall %d ms, peak memory %d bytes\n",
		res.RunID, res.Reason, res.ExitCode, res.CPUTimeMs, res.WallTimeMs, res.PeakMemoryBytes)

	// The monitor stores the event as agent.run_finished, about this
	// agent only.
	ev, err := a.PublishEvent(ctx, agent.Event{
		Type: "run_finished", Action: "run", Resource: "bundle:" + sub.BundleID,
		Metadata: map[string]string{"run_id": res.RunID, "reason": res.Reason},
	})
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "reported event %s (%s, severity %s)\n", ev.ID, ev.Type, ev.Severity)

	if cfg.key == "" {
		return nil
	}
	key, err := a.RetrieveKey(ctx, cfg.key, "example agent")
	if err != nil {
		return err
	}
	if key.Value == "" {
		return errors.New("keyvault returned an empty key value")
	}
	// Printing a Key shows its metadata only; the value stays in key.Value.
	fmt.Fprintln(out, "retrieved", key)

	return nil
}
