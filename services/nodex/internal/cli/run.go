package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/nats-io/nats.go"
	"github.com/spf13/cobra"

	"github.com/nodexsec/nodex/libs/agent"
	"github.com/nodexsec/nodex/libs/bundle"
	"github.com/nodexsec/nodex/libs/errs"
	"github.com/nodexsec/nodex/libs/identity"
	"github.com/nodexsec/nodex/services/codesec/codesec"
)

// Exit codes of `nodex run` beyond the program's own status. They follow
// GNU timeout(1) and the shell: 124 stopped, 125 own failure, 126 refused.
const (
	ExitRunLimit   = 124 // the sandbox stopped the program: a limit or a killing seccomp rule
	ExitRunError   = 125 // NodeX, the connection or reading FILE failed; nothing ran
	ExitRunRefused = 126 // codesec, the policy or the broker refused; nothing ran
)

// languageOf maps a file extension to a submission language.
var languageOf = map[string]string{
	".py": "python", ".js": "javascript", ".mjs": "javascript", ".cjs": "javascript",
	".sh": "sh",
}

// runFlags are the options of `nodex run`.
type runFlags struct {
	lang      string
	modules   []string
	args      []string
	stdinFile string
	timeout   time.Duration
	memoryMiB int64
}

func newRunCmd(g *globals) *cobra.Command {
	var f runFlags
	cmd := &cobra.Command{
		Use:   "run FILE [--lang LANG] [--module NAME]... [--timeout DURATION] [--memory MIB]",
		Short: "Check FILE with codesec, run it in the sandbox and print its output",
		Long: fmt.Sprintf(`run submits FILE as the demo agent (or --creds): codesec scans it and decides
with the policy, then the sandbox runs the sealed bundle. The program's standard
output and error are printed as they were captured, then a summary line (how
the run ended, CPU and wall time, peak memory, violations) on standard error.
With --json, the submission verdict and the whole run result are printed as one
JSON object instead. While every sandbox slot and queue place is taken
(sandbox_busy), run sends the run again after a growing random wait, until
--timeout plus a minute has passed (320 s without --timeout); then it exits 125.

Limits: codesec accepts --timeout up to %s and --memory up to %d MiB; a larger
value is a usage error. The sandbox-runner then lowers each limit to its own
maximum (-max-wall-time, default 10s, and -max-memory-bytes, default 256 MiB),
and run says so on standard error. Each maximum is also the limit of a run
without the flag.

Exit codes:
  the program's own status   the program ran and exited (128+N if signal N ended it)
  124                        the sandbox stopped it: time, CPU, memory, process or
                             output limit, or a system call that the seccomp
                             filter kills on (another architecture or x32
                             number, kexec, module and reboot calls); a call
                             the sandbox denies with EPERM, such as socket, is
                             listed under violations and the program's own
                             status is passed on
  125                        NodeX or the connection failed, or FILE could not be
                             read; nothing ran
  126                        codesec or the policy refused the code, or the broker
                             rejected the credentials; nothing ran
  2                          a flag, a limit or the argument count is wrong (as
                             for every nodex command); nothing ran`, maxRunTimeout, maxRunMemoryMiB),
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) != 1 {
				return usageError{fmt.Errorf("run takes one FILE, got %d arguments", len(args))}
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkRunLimits(f); err != nil {
				return err
			}
			code := g.run(cmd.Context(), args[0], f)
			if code == ExitOK {
				return nil
			}

			return exitCode(code)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.lang, "lang", "", "language: python, javascript or sh (default: from the file extension .py, .js or .sh)")
	fl.StringArrayVar(&f.modules, "module", nil, "third-party module the program imports (repeatable)")
	fl.StringArrayVar(&f.args, "arg", nil, "argument passed to the program (repeatable)")
	fl.StringVar(&f.stdinFile, "stdin", "", "file passed to the program as standard input (default: empty)")
	fl.DurationVar(&f.timeout, "timeout", 0, fmt.Sprintf("wall-clock time limit of the run, e.g. 5s, at most %s; the sandbox-runner lowers a larger value to its -max-wall-time (default 10s), which is also the default", maxRunTimeout))
	fl.Int64Var(&f.memoryMiB, "memory", 0, fmt.Sprintf("memory limit of the run in MiB, at most %d; the sandbox-runner lowers a larger value to its -max-memory-bytes (default 256 MiB), which is also the default", maxRunMemoryMiB))

	return cmd
}

// run performs `nodex run` and returns its exit code. It prints its own
// error messages, so that a NodeX failure exits 125 and not with the
// codes of the other commands.
func (g *globals) run(ctx context.Context, path string, f runFlags) int {
	sub, err := buildSubmission(g, path, f)
	if err != nil {
		fmt.Fprintln(g.stdio.Err, "nodex run:", err)
		return ExitRunError
	}
	url, err := g.serverURL()
	if err != nil {
		fmt.Fprintln(g.stdio.Err, "nodex run:", err)
		return ExitRunError
	}
	creds, err := g.loadCreds(identity.DemoAgentID)
	if err != nil {
		fmt.Fprintf(g.stdio.Err, "nodex run: loading credentials %s: %v\n",
			g.credsPath(identity.DemoAgentID), err)
		return ExitRunError
	}
	a, err := agent.Open(ctx, agent.Config{URL: url, Creds: creds})
	if errors.Is(err, nats.ErrAuthorization) {
		fmt.Fprintln(g.stdio.Err, "nodex run:", credentialsRejected{url: url, id: creds.ID})
		return ExitRunRefused
	}
	if err != nil {
		fmt.Fprintln(g.stdio.Err, "nodex run:", err)
		return ExitRunError
	}
	defer a.Close(context.WithoutCancel(ctx))

	if f.timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, f.timeout+time.Minute)
		defer cancel()
	}
	res, err := a.Run(ctx, sub)
	if err != nil {
		return g.reportRunError(err)
	}
	if g.json {
		if err := printJSON(g.stdio.Out, res); err != nil {
			return ExitRunError
		}
		reportLoweredLimits(g.stdio.Err, f, res.Exec)
		return runExitCode(res.Exec)
	}
	printRun(g, res)
	reportLoweredLimits(g.stdio.Err, f, res.Exec)

	return runExitCode(res.Exec)
}

// The largest limits codesec accepts in a submission. The sandbox-runner
// lowers each to its own configured maximum, which the client cannot know
// before the run; the receipt shows the applied limits.
const (
	maxRunTimeout   = time.Duration(codesec.MaxWallTimeMillis) * time.Millisecond
	maxRunMemoryMiB = codesec.MaxMemoryBytes >> 20
)

// checkRunLimits returns a usage error for a --timeout or --memory that
// codesec would reject.
func checkRunLimits(f runFlags) error {
	switch {
	case f.timeout < 0 || (f.timeout > 0 && f.timeout < time.Millisecond):
		return usageError{fmt.Errorf("invalid --timeout %s: use at least 1ms and at most %s",
			f.timeout, maxRunTimeout)}
	case f.timeout > maxRunTimeout:
		return usageError{fmt.Errorf("invalid --timeout %s: the maximum is %s", f.timeout,
			maxRunTimeout)}
	case f.memoryMiB < 0:
		return usageError{fmt.Errorf("invalid --memory %d: use a positive number of MiB, "+
			"at most %d", f.memoryMiB, maxRunMemoryMiB)}
	case f.memoryMiB > maxRunMemoryMiB:
		return usageError{fmt.Errorf("invalid --memory %d: the maximum is %d MiB", f.memoryMiB,
			maxRunMemoryMiB)}
	}

	return nil
}

// reportLoweredLimits notes on stderr each requested limit that the
// sandbox-runner lowered to its own maximum. The applied limits come from
// the run's receipt; a receipt that cannot be decoded is skipped, since
// receipts verify checks receipts.
func reportLoweredLimits(w io.Writer, f runFlags, r *agent.ExecReply) {
	var s signedReceipt
	var body struct {
		Limits struct {
			WallTimeMs  int64 `json:"wall_time_ms"`
			MemoryBytes int64 `json:"memory_bytes"`
		} `json:"limits"`
	}
	if json.Unmarshal(r.Receipt, &s) != nil || json.Unmarshal(s.Body, &body) != nil {
		return
	}
	applied := body.Limits
	if f.timeout > 0 && applied.WallTimeMs > 0 && applied.WallTimeMs < f.timeout.Milliseconds() {
		fmt.Fprintf(w, "nodex: the sandbox lowered --timeout %s to its maximum of %s\n", f.timeout,
			time.Duration(applied.WallTimeMs)*time.Millisecond)
	}
	if f.memoryMiB > 0 && applied.MemoryBytes > 0 && applied.MemoryBytes < f.memoryMiB<<20 {
		fmt.Fprintf(w, "nodex: the sandbox lowered --memory %d to its maximum of %d MiB\n",
			f.memoryMiB, applied.MemoryBytes>>20)
	}
}

// buildSubmission reads the program and turns the flags into a submission.
func buildSubmission(g *globals, path string, f runFlags) (agent.Submission, error) {
	lang := f.lang
	if lang == "" {
		lang = languageOf[strings.ToLower(filepath.Ext(path))]
		if lang == "" {
			return agent.Submission{}, fmt.Errorf(
				"cannot tell the language of %s from its extension: pass --lang python, javascript or sh", path)
		}
	}
	code, err := os.ReadFile(path)
	if err != nil {
		return agent.Submission{}, fmt.Errorf("reading program: %w", err)
	}
	if !utf8.Valid(code) {
		return agent.Submission{}, fmt.Errorf("%s is not UTF-8 text", path)
	}
	name := filepath.Base(path)
	sub := agent.Submission{
		Language: lang, Entrypoint: name, Modules: f.modules, Args: f.args,
		Files: []agent.SourceFile{{Name: name, Content: string(code)}},
		Limits: bundle.Limits{
			WallTimeMillis: f.timeout.Milliseconds(), MemoryBytes: f.memoryMiB << 20,
		},
	}
	if f.stdinFile != "" {
		in, err := os.ReadFile(f.stdinFile)
		if err != nil {
			return agent.Submission{}, fmt.Errorf("reading --stdin: %w", err)
		}
		sub.Stdin = string(in)
	}

	return sub, nil
}

// reportRunError prints why nothing ran and returns 126 for a refusal or
// 125 for any other failure.
func (g *globals) reportRunError(err error) int {
	var ce *errs.Error
	if errors.As(err, &ce) && (ce.Class == "denied" || ce.Class == "invalid") {
		fmt.Fprintf(g.stdio.Err, "nodex run: refused (%s): %s\n", ce.Name, ce.Description)
		return ExitRunRefused
	}
	fmt.Fprintln(g.stdio.Err, "nodex run:", err)

	return ExitRunError
}

// runExitCode maps a run's end to the exit code of `nodex run`.
func runExitCode(r *agent.ExecReply) int {
	switch r.Reason {
	case "exited":
		if r.Signal != 0 {
			return 128 + r.Signal
		}
		return r.ExitCode
	case "setup_failed":
		return ExitRunError
	default:
		return ExitRunLimit
	}
}

// printRun writes the program's output and a summary line.
func printRun(g *globals, res *agent.Result) {
	r := res.Exec
	_, _ = io.WriteString(g.stdio.Out, r.Stdout)
	_, _ = io.WriteString(g.stdio.Err, r.Stderr)
	if r.StdoutTruncated || r.StderrTruncated {
		fmt.Fprintln(g.stdio.Err, "nodex: output truncated at the run's output limit")
	}
	end := "exited " + fmt.Sprint(r.ExitCode)
	switch {
	case r.Reason != "exited":
		end = "stopped: " + r.Reason
	case r.Signal != 0:
		end = fmt.Sprintf("killed by signal %d", r.Signal)
	}
	fmt.Fprintf(g.stdio.Err, "nodex: %s; cpu %d ms, wall %d ms, peak memory %.1f MiB; run %s\n",
		end, r.CPUTimeMs, r.WallTimeMs, float64(r.PeakMemoryBytes)/(1<<20), r.RunID)
	if r.BusyRetries > 0 {
		fmt.Fprintf(g.stdio.Err, "nodex: the sandbox was busy; the run started after %s\n",
			plural(r.BusyRetries, "retry", "retries"))
	}
	if len(r.Violations) > 0 {
		fmt.Fprintf(g.stdio.Err, "nodex: violations: %s\n", strings.Join(r.Violations, "; "))
	}
	if r.Redactions > 0 {
		fmt.Fprintf(g.stdio.Err, "nodex: %s redacted from the output\n",
			plural(r.Redactions, "secret", "secrets"))
	}
	if len(res.Submit.Findings) > 0 {
		fmt.Fprintf(g.stdio.Err, "nodex: codesec accepted the code with %s (%s)\n",
			plural(len(res.Submit.Findings), "finding", "findings"), joinOr(res.Submit.Flags))
	}
}
