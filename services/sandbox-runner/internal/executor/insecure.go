package executor

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/nodexsec/nodex/services/sandbox-runner/internal/proto"
)

// runInsecure runs a program as a plain child process in a temporary folder
// standing in for /work. It exists for development on hosts that cannot build
// the sandbox; it isolates nothing.
func (e *Executor) runInsecure(ctx context.Context, spec Spec, lim Limits, argv, env []string,
	files []proto.File) (Result, error) {
	e.log.Warn("insecure run without sandbox", "run_id", spec.RunID, "insecure", true)
	dir, err := os.MkdirTemp("", "nodex-insecure-")
	if err != nil {
		return Result{}, fmt.Errorf("creating work folder: %w", err)
	}
	defer os.RemoveAll(dir)
	for _, f := range files {
		p := filepath.Join(dir, filepath.Clean("/"+f.Path))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return Result{}, fmt.Errorf("creating folder for %q: %w", f.Path, err)
		}
		if err := os.WriteFile(p, f.Data, 0o644); err != nil {
			return Result{}, fmt.Errorf("writing %q: %w", f.Path, err)
		}
	}
	for i, a := range argv {
		argv[i] = strings.ReplaceAll(a, "/work", dir)
	}
	ctx, cancel := context.WithTimeout(ctx, lim.WallTime)
	defer cancel()
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Dir, cmd.Env = dir, env
	stdout := newCappedBuffer(lim.OutputBytes, cancel)
	stderr := newCappedBuffer(lim.OutputBytes, cancel)
	cmd.Stdout, cmd.Stderr = writerFunc(stdout.add), writerFunc(stderr.add)
	start := time.Now()
	err = cmd.Run()
	res := Result{RunID: spec.RunID, Insecure: true, Limits: lim, WallTime: time.Since(start),
		Reason: ReasonExited}
	if cmd.ProcessState != nil {
		res.ExitCode = cmd.ProcessState.ExitCode()
	}
	if ctx.Err() != nil {
		res.Reason = ReasonTimeout
	} else if err != nil && cmd.ProcessState == nil {
		return res, fmt.Errorf("running %s: %w", argv[0], err)
	}
	res.Stdout, res.StdoutTruncated = stdout.result()
	res.Stderr, res.StderrTruncated = stderr.result()
	return res, nil
}

type writerFunc func([]byte)

func (w writerFunc) Write(b []byte) (int, error) {
	w(b)
	return len(b), nil
}
