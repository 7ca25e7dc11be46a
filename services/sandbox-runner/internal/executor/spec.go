// Package executor runs programs inside sandboxes built by sandbox-init: it owns
// the slots (host ids), the cgroups, the spawning thread, the output pipes, the
// timeouts and the kill switch.
package executor

import (
	"time"

	"github.com/nodexsec/nodex/services/sandbox-runner/internal/proto"
)

// Reasons a run ended, as reported in [Result.Reason].
const (
	ReasonExited      = "exited"
	ReasonTimeout     = "timeout"
	ReasonMemory      = "memory"
	ReasonPids        = "pids"
	ReasonCPU         = "cpu"
	ReasonOutputLimit = "output_limit"
	ReasonSeccomp     = "seccomp"
	ReasonKilled      = "killed"
	ReasonSetupFailed = "setup_failed"
)

// Runtimes that a [Spec] can name.
const (
	RuntimePython = "python"
	RuntimeNode   = "node"
	RuntimeSh     = "sh"
	RuntimeBash   = "bash"
)

// Spec describes one run.
type Spec struct {
	// RunID names the run in cgroups, logs and kill requests; empty gets a
	// generated id.
	RunID string
	// Labels (such as bundle_id and agent_id) let Kill find the run.
	Labels map[string]string

	// Runtime and Entrypoint (a path relative to /work) choose the interpreter;
	// Argv instead runs an absolute path inside the sandbox as is.
	Runtime    string
	Entrypoint string
	Args       []string
	Argv       []string

	Files []proto.File
	// Stdin is the program's standard input; empty means /dev/null.
	Stdin  []byte
	Limits Limits

	// Modules lists the modules the program may import; nil leaves imports open.
	Modules []string

	// Layers switches isolation layers off; only tests set it.
	Layers proto.Layers
}

// Limits bound one run; a zero field takes the executor's default.
type Limits struct {
	WallTime    time.Duration
	CPUTime     time.Duration
	MemoryBytes int64
	Pids        int64
	// OutputBytes caps stdout and stderr each; the run is killed past it.
	OutputBytes int64
	WorkBytes   int64
	WorkInodes  int64
	TmpBytes    int64
	FileBytes   int64
	OpenFiles   uint64
}

// Result is the outcome of one run.
type Result struct {
	RunID    string
	ExitCode int
	Signal   int
	Reason   string
	// Error explains a setup failure; it names a step, never program data.
	Error string

	Stdout          []byte
	Stderr          []byte
	StdoutTruncated bool
	StderrTruncated bool

	WallTime        time.Duration
	CPUTime         time.Duration
	PeakMemoryBytes int64

	Denials  []proto.Denial
	Landlock int
	Insecure bool
	Limits   Limits

	// Steps are the ends of the run's steps in time order, in the runner and
	// in sandbox-init, from the start of the init that served the run; only
	// with [Config.TraceSteps].
	Steps []proto.Step
}
