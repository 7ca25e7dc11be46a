// Command sandbox-init is PID 1 of a NodeX sandbox. The runner starts it inside
// new namespaces; it is built static (CGO_ENABLED=0) and imports no NATS, OPA or
// OpenTelemetry code.
package main

import (
	"os"

	"github.com/nodexsec/nodex/services/sandbox-runner/internal/initproc"
)

func main() {
	os.Exit(initproc.Main())
}
