package agent

import (
	"context"
	"fmt"
	"time"

	"go.opentelemetry.io/otel/attribute"

	"github.com/nodexsec/nodex/libs/bundle"
)

// SourceFile is one file of a submission; Content is UTF-8 text.
type SourceFile struct {
	Name    string `json:"name"`
	Content string `json:"content"`
}

// Submission is the body of a nodex.v1.codesec.submit request.
type Submission struct {
	// Language is python, javascript, sh or bash.
	Language string       `json:"language"`
	Files    []SourceFile `json:"files"`
	// Entrypoint names the file that runs, one of Files.
	Entrypoint string `json:"entrypoint"`
	// Modules are the third-party modules the program imports.
	Modules []string `json:"modules,omitempty"`
	Args    []string `json:"args,omitempty"`
	Stdin   string   `json:"stdin,omitempty"`
	// Limits are the requested resource limits; zero fields take the
	// sandbox-runner's defaults.
	Limits bundle.Limits `json:"limits"`
}

// SubmitReply is codesec's verdict on a submission. An accepted
// submission has a BundleID that the sandbox runs.
type SubmitReply struct {
	BundleID   string           `json:"bundle_id"`
	Verdict    string           `json:"verdict"`
	Flags      []string         `json:"flags"`
	DecisionID string           `json:"decision_id"`
	CodeSHA256 string           `json:"code_sha256"`
	Expires    time.Time        `json:"expires"`
	Findings   []bundle.Finding `json:"findings"`
}

// ExecRequest is the body of a nodex.v1.sandbox.exec request: the bundle to run.
type ExecRequest struct {
	BundleID string `json:"bundle_id"`
}

// ExecReply is the outcome of one sandbox run. Reason is why the run
// ended (for example "exited" or a limit); Violations lists what the
// sandbox blocked. Receipt is the runner's signed run receipt, kept as raw
// JSON.
type ExecReply struct {
	RunID           string   `json:"run_id"`
	BundleID        string   `json:"bundle_id"`
	Reason          string   `json:"reason"`
	ExitCode        int      `json:"exit_code"`
	Signal          int      `json:"signal"`
	Stdout          string   `json:"stdout"`
	Stderr          string   `json:"stderr"`
	StdoutTruncated bool     `json:"stdout_truncated"`
	StderrTruncated bool     `json:"stderr_truncated"`
	CPUTimeMs       int64    `json:"cpu_time_ms"`
	WallTimeMs      int64    `json:"wall_time_ms"`
	PeakMemoryBytes int64    `json:"peak_memory_bytes"`
	Redactions      int      `json:"redactions"`
	Violations      []string `json:"violations"`
	Receipt         RawJSON  `json:"receipt"`
	// BusyRetries counts how often the SDK sent the run again after a
	// sandbox_busy reply; the runner does not send it.
	BusyRetries int `json:"-"`
}

// RawJSON is a JSON value kept undecoded.
type RawJSON []byte

// MarshalJSON returns the stored bytes, or null when empty.
func (r RawJSON) MarshalJSON() ([]byte, error) {
	if len(r) == 0 {
		return []byte("null"), nil
	}

	return r, nil
}

// UnmarshalJSON stores a copy of data.
func (r *RawJSON) UnmarshalJSON(data []byte) error {
	*r = append((*r)[:0], data...)

	return nil
}

// Result is a submission's verdict and, when codesec accepted it, its run.
type Result struct {
	Submit SubmitReply `json:"submit"`
	Exec   *ExecReply  `json:"exec,omitempty"`
}

// Submit sends code to codesec, which scans it, decides on it with the
// policy and stores an accepted submission as a sealed bundle. A refusal
// is a coded error (*errs.Error).
func (a *Agent) Submit(ctx context.Context, s Submission) (*SubmitReply, error) {
	var reply SubmitReply
	if err := a.request(ctx, "agent.submit", SubjectSubmit, RoleCodesec, s, &reply); err != nil {
		return nil, fmt.Errorf("submitting %s: %w", s.Entrypoint, err)
	}

	return &reply, nil
}

// Exec runs a stored bundle in the sandbox and waits for its end. Without
// a deadline on ctx it waits at most [DefaultRunTimeout]. While the
// sandbox-runner rejects the run with sandbox_busy, Exec sends it again
// after a backoff (Config.Busy). When the deadline leaves no time for
// another wait, it returns a [*BusyError].
func (a *Agent) Exec(ctx context.Context, bundleID string) (*ExecReply, error) {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, DefaultRunTimeout)
		defer cancel()
	}
	ctx, sp := a.tracer.Start(ctx, "agent.exec")
	defer sp.End()

	var reply ExecReply
	retries, err := a.retryBusy(ctx, func() error {
		reply = ExecReply{}
		return a.request(ctx, "agent.exec_attempt", SubjectExec, RoleSandbox,
			ExecRequest{BundleID: bundleID}, &reply)
	})
	sp.SetAttributes(attribute.Int("nodex.busy_retries", retries))
	if err != nil {
		return nil, fmt.Errorf("running bundle %s: %w", bundleID, err)
	}
	reply.BusyRetries = retries

	return &reply, nil
}

// Run submits s and runs the accepted bundle: the whole path from source
// to output. A refusal by codesec returns its coded error and no run.
func (a *Agent) Run(ctx context.Context, s Submission) (*Result, error) {
	ctx, sp := a.tracer.Start(ctx, "agent.run")
	defer sp.End()

	sub, err := a.Submit(ctx, s)
	if err != nil {
		return nil, err
	}
	res := &Result{Submit: *sub}
	exec, err := a.Exec(ctx, sub.BundleID)
	if err != nil {
		return res, err
	}
	res.Exec = exec

	return res, nil
}
