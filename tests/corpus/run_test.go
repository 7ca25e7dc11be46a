package corpus

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nodexsec/nodex/libs/agent"
	"github.com/nodexsec/nodex/libs/bundle"
	"github.com/nodexsec/nodex/libs/errs"
)

// Outcomes of one item. A benign item must pass; a hostile item must be
// refused or contained. Known marks a benign item whose own test fails
// outside NodeX too (see knownFailures).
const (
	Passed    = "passed"
	Refused   = "refused"
	Contained = "contained"
	Known     = "known"
	Wrong     = "wrong"
)

// hostileLimits are the short limits of hostile runs, so that their
// infinite loops and deadlocks do not each burn the default 10 s.
var hostileLimits = bundle.Limits{
	WallTimeMillis: 3000, CPUTimeMillis: 2000, MemoryBytes: 128 << 20, MaxProcesses: 32,
	MaxOutputBytes: 64 << 10,
}

// knownFailures are benign items whose own test fails under plain node or
// bats too, as the corpus README records. The canonical JavaScript
// solutions of 112 and 155 are wrong and 162 needs the npm package js-md5.
// Exercism's rational-numbers needs gawk, which the host may lack.
var knownFailures = map[string]bool{
	"humaneval-x_js.jsonl.gz/JavaScript/112":  true,
	"humaneval-x_js.jsonl.gz/JavaScript/155":  true,
	"humaneval-x_js.jsonl.gz/JavaScript/162":  true,
	"exercism_bash.jsonl.gz/rational-numbers": !fileExists("/usr/bin/gawk"),
}

// workers is how many items are in flight at once: the sandbox-runner's 2
// default slots plus 2 more in codesec or the runner's queue.
const workers = 4

// hostileBatch is how many hostile items one agent identity submits before
// the runner replaces it, so that one containment stops only a few items.
const hostileBatch = 8

// result is what happened to one item.
type result struct {
	item     Item
	outcome  string
	detail   string
	agentID  string
	bundleID string
	// refusal is the coded error name when codesec or the sandbox refused.
	refusal    string
	violations int
	elapsed    time.Duration
}

// runner runs items through the system and judges each outcome.
type runner struct {
	sys   *system
	probe *hostProbe
	mu    sync.Mutex
	// replaced counts agents that the system suspended or revoked while
	// the runner was using them.
	replaced int
	// transient lists the items retried after a transient error.
	transient []string
}

// runAll runs items on workers goroutines, each with its own agent, and
// returns the results in item order.
func (r *runner) runAll(ctx context.Context, t *testing.T, items []Item) []result {
	results := make([]result, len(items))
	next := make(chan int)
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			w := &worker{r: r}
			defer w.close(ctx)
			for i := range next {
				results[i] = w.run(ctx, items[i])
			}
		}()
	}
	for i := range items {
		next <- i
	}
	close(next)
	wg.Wait()

	return results
}

// worker owns one agent identity at a time.
type worker struct {
	r    *runner
	a    *agent.Agent
	kind Kind
	used int
}

func (w *worker) close(ctx context.Context) {
	if w.a != nil {
		_ = w.a.Close(ctx)
		w.a = nil
	}
}

// agentFor returns the worker's agent, replacing it when the kind of item
// changes or a hostile batch is used up.
func (w *worker) agentFor(ctx context.Context, kind Kind) (*agent.Agent, error) {
	if w.a != nil && (w.kind != kind || (kind == Hostile && w.used >= hostileBatch)) {
		w.close(ctx)
	}
	if w.a == nil {
		prefix := "corpus-benign"
		if kind == Hostile {
			prefix = "corpus-hostile"
		}
		a, err := w.r.sys.newAgent(ctx, prefix)
		if err != nil {
			return nil, err
		}
		w.a, w.kind, w.used = a, kind, 0
	}
	w.used++

	return w.a, nil
}

// run runs one item, retrying with a fresh agent when the system contained
// the previous one, and with the same agent when the sandbox stayed busy
// or a timeout or unavailable dependency ended the attempt.
func (w *worker) run(ctx context.Context, it Item) result {
	var res result
	for attempt := range 4 {
		a, err := w.agentFor(ctx, it.Kind)
		if err != nil {
			return result{item: it, outcome: Wrong, detail: err.Error()}
		}
		start := time.Now()
		res = w.r.runOnce(ctx, a, it)
		res.elapsed = time.Since(start)
		switch {
		case res.refusal == errs.SandboxBusy.Name:
			time.Sleep(time.Duration(attempt+1) * 500 * time.Millisecond)
		case res.refusal == refusalClosed || w.r.sys.contained(a.ID()):
			w.r.mu.Lock()
			w.r.replaced++
			w.r.mu.Unlock()
			w.close(ctx)
			if res.outcome == Wrong || res.refusal == errs.IdentityInactive.Name {
				continue
			}
			return res
		case res.outcome == Wrong && transient(res.refusal) && attempt < 3:
			// A timeout or an unavailable dependency shows nothing about
			// the item, so it is retried after a pause, and the report
			// lists it.
			w.r.mu.Lock()
			w.r.transient = append(w.r.transient, it.File+"/"+it.ID+" ("+res.refusal+")")
			w.r.mu.Unlock()
			time.Sleep(time.Second)
		default:
			return res
		}
	}

	return res
}

// refusalClosed marks a result whose agent lost its connection: the server
// closes the connections of a suspended identity.
const refusalClosed = "connection_closed"

// transient reports whether a coded error is a fault of the moment (a
// timeout, an unavailable dependency) rather than a verdict on the code.
func transient(name string) bool {
	switch name {
	case errs.Timeout.Name, errs.Unavailable.Name, errs.AuditUnavailable.Name:
		return true
	}

	return false
}

// runOnce submits and runs it as a and judges the outcome.
func (r *runner) runOnce(ctx context.Context, a *agent.Agent, it Item) result {
	res := result{item: it, agentID: a.ID()}
	sub := it.Submission
	if it.Kind == Hostile {
		sub.Limits = hostileLimits
	}
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()

	out, err := a.Run(ctx, sub)
	if out != nil {
		res.bundleID = out.Submit.BundleID
	}
	if err != nil {
		var ce *errs.Error
		if errors.As(err, &ce) {
			res.refusal = ce.Name
		}
		if errors.Is(err, agent.ErrConnectionClosed) {
			res.refusal = refusalClosed
		}
		res.outcome, res.detail = Wrong, err.Error()
		if it.Kind == Hostile && isRefusal(res.refusal) {
			res.outcome = Refused
		}
		return r.known(res)
	}

	exec := out.Exec
	res.violations = len(exec.Violations)
	if it.Kind == Benign {
		return r.known(judgeBenign(res, it, exec))
	}
	res.outcome, res.detail = Contained, ""
	if leak := r.probe.leak(exec.Stdout + exec.Stderr); leak != "" {
		res.outcome, res.detail = Wrong, leak
	}
	if exec.PeakMemoryBytes > hostileLimits.MemoryBytes+hostileLimits.MemoryBytes/20 {
		res.outcome = Wrong
		res.detail = fmt.Sprintf("peak memory %d bytes over the %d limit",
			exec.PeakMemoryBytes, hostileLimits.MemoryBytes)
	}

	return res
}

// isRefusal reports whether a coded error is a deliberate refusal of the
// code, as opposed to a fault of the system.
func isRefusal(name string) bool {
	switch name {
	case errs.CodeRefused.Name, errs.UnsupportedLanguage.Name, errs.InvalidRequest.Name,
		errs.PayloadTooLarge.Name, errs.AccessDenied.Name, errs.BundleInvalid.Name:
		return true
	}

	return false
}

func judgeBenign(res result, it Item, exec *agent.ExecReply) result {
	switch {
	case exec.ExitCode != 0:
		res.outcome = Wrong
		res.detail = fmt.Sprintf("exit %d (%s): %s", exec.ExitCode, exec.Reason,
			clip(exec.Stderr+exec.Stdout))
	case it.CheckStderr && strings.Contains(exec.Stderr, "Assertion failed"):
		res.outcome, res.detail = Wrong, "Assertion failed on stderr: "+clip(exec.Stderr)
	default:
		res.outcome = Passed
	}

	return res
}

// known turns a wrong benign result into Known when the item fails outside
// NodeX too.
func (r *runner) known(res result) result {
	if res.outcome == Wrong && res.item.Kind == Benign && knownFailures[res.item.File+"/"+res.item.ID] {
		res.outcome = Known
	}

	return res
}

// clip shortens program output for a detail line to its last 300 bytes,
// where a traceback names the error.
func clip(s string) string {
	s = strings.TrimSpace(s)
	if len(s) > 300 {
		return "..." + s[len(s)-300:]
	}

	return s
}
