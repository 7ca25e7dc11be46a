package executor

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/nodexsec/nodex/services/sandbox-runner/internal/cgroup"
	"github.com/nodexsec/nodex/services/sandbox-runner/internal/proto"
)

// ErrNoSandbox reports that this host cannot build the sandbox.
var ErrNoSandbox = errors.New("sandbox: host cannot build the sandbox")

// Config configures an [Executor].
type Config struct {
	// InitPath is the sandbox-init binary. Every directory on its path must be
	// searchable by the slots' host ids, since the init execs it as one of them.
	InitPath string
	// Slots is the number of concurrent runs; 0 means 2.
	Slots int
	// HostIDBase is the first host uid and gid given to slots: slot n uses
	// HostIDBase+2n for setup (inside id 0) and HostIDBase+2n+1 for the program
	// (inside id 1000). 0 means 1<<20. Used only when the runner is root.
	HostIDBase int
	// Defaults fill the zero fields of each run's limits.
	Defaults Limits
	// Insecure runs programs without any sandbox. Development only; every run
	// under it is logged as insecure.
	Insecure bool
	// TraceSteps fills [Result.Steps]; the service sets it from the
	// NODEX_DEBUG_SANDBOX_STEPS knob.
	TraceSteps bool
	Logger     *slog.Logger
}

// Executor runs programs in sandboxes. It is safe for concurrent use.
type Executor struct {
	cfg      Config
	log      *slog.Logger
	cgroups  *cgroup.Manager
	spawner  *spawner
	slots    chan int
	runtimes map[string]string
	etcLinks map[string]string
	rootful  bool

	// warm holds each slot's inits started ahead of time (nil when starting
	// one failed); a slot always has preparedPerSlot in it or on their way.
	warm []chan *sandboxProc

	// cleanups counts the inits of finished runs whose exit and cgroup
	// removal are still under way.
	cleanups sync.WaitGroup
	// preparing counts the inits being started ahead of their runs.
	preparing sync.WaitGroup
	// deadInits counts the inits found dead before they received their run
	// and replaced by fresh ones.
	deadInits atomic.Int64
	// beforeConfig, when set (only tests set it), runs just before an init
	// is sent its run's config.
	beforeConfig func(sp *sandboxProc)

	mu     sync.Mutex
	runs   map[string]*activeRun
	idle   map[*sandboxProc]bool // prepared inits, for tests and Close
	closed bool
}

type activeRun struct {
	labels map[string]string
	kill   func(reason string)
}

// DefaultLimits are the limits used when neither the run nor the config sets one.
var DefaultLimits = Limits{
	WallTime:    10 * time.Second,
	CPUTime:     5 * time.Second,
	MemoryBytes: 256 << 20,
	Pids:        64,
	OutputBytes: 1 << 20,
	WorkBytes:   64 << 20,
	WorkInodes:  4096,
	TmpBytes:    64 << 20,
	FileBytes:   64 << 20,
	OpenFiles:   256,
}

// New checks the host, sweeps cgroups left by an earlier runner, and returns an
// executor. Without Insecure it returns an error wrapping [ErrNoSandbox],
// naming what is missing, when it cannot build the sandbox.
func New(cfg Config) (*Executor, error) {
	if cfg.Logger == nil {
		return nil, errors.New("executor: nil logger")
	}
	if cfg.Slots <= 0 {
		cfg.Slots = 2
	}
	if cfg.HostIDBase == 0 {
		cfg.HostIDBase = 1 << 20
	}
	cfg.Defaults = fillLimits(cfg.Defaults, DefaultLimits)
	e := &Executor{
		cfg:     cfg,
		log:     cfg.Logger.With("component", "executor"),
		spawner: newSpawner(),
		slots:   make(chan int, cfg.Slots),
		runs:    map[string]*activeRun{},
		idle:    map[*sandboxProc]bool{},
		rootful: os.Geteuid() == 0,
	}
	for i := 0; i < cfg.Slots; i++ {
		e.slots <- i
	}

	var err error
	if e.runtimes, err = resolveRuntimes(); err != nil {
		return nil, err
	}
	e.etcLinks = alternativesLinks()
	logHostSettings(e.log)

	if cfg.Insecure {
		e.log.Warn("sandbox disabled: programs run without isolation", "insecure", true)
		return e, nil
	}
	if err := e.checkHost(); err != nil {
		return nil, err
	}
	return e, nil
}

// prewarmAll gives every slot its first prepared inits.
func (e *Executor) prewarmAll() {
	e.warm = make([]chan *sandboxProc, e.cfg.Slots)
	for slot := range e.warm {
		e.warm[slot] = make(chan *sandboxProc, preparedPerSlot)
		for i := 0; i < preparedPerSlot; i++ {
			e.prewarm(slot)
		}
	}
}

func (e *Executor) checkHost() error {
	fi, err := os.Stat(e.cfg.InitPath)
	if err != nil || fi.Mode()&0o111 == 0 {
		return fmt.Errorf("%w: sandbox-init not executable at %q; build it with "+
			"CGO_ENABLED=0 go build ./cmd/sandbox-init", ErrNoSandbox, e.cfg.InitPath)
	}
	if e.cgroups, err = cgroup.Detect(); err != nil {
		return fmt.Errorf("%w: %w", ErrNoSandbox, err)
	}
	for _, c := range []string{cgroup.Memory, cgroup.Pids, cgroup.CPUAcct} {
		if e.cgroups.Available(c) == 0 {
			return fmt.Errorf("%w: no usable cgroup for the %s controller", ErrNoSandbox, c)
		}
	}
	n, err := e.cgroups.Sweep()
	if err != nil {
		return fmt.Errorf("%w: sweeping stale cgroups: %w", ErrNoSandbox, err)
	}
	if n > 0 {
		e.log.Warn("stale sandbox cgroups removed", "count", n)
	}
	e.prewarmAll()
	e.log.Info("cgroups detected",
		"memory", e.cgroups.Available(cgroup.Memory), "pids", e.cgroups.Available(cgroup.Pids),
		"cpu", e.cgroups.Available(cgroup.CPU), "cpuacct", e.cgroups.Available(cgroup.CPUAcct))

	// A real run proves namespaces, mounts, seccomp and cgroups work here.
	res, err := e.Run(context.Background(), Spec{RunID: "host-check", Argv: []string{"/usr/bin/true"}})
	if err != nil {
		return fmt.Errorf("%w: %w", ErrNoSandbox, err)
	}
	if res.Reason != ReasonExited || res.ExitCode != 0 {
		return fmt.Errorf("%w: test run ended with reason %s, exit code %d: %s",
			ErrNoSandbox, res.Reason, res.ExitCode, res.Error)
	}
	e.log.Info("sandbox ready", "landlock_abi", res.Landlock, "slots", e.cfg.Slots,
		"rootful", e.rootful)
	return nil
}

func fillLimits(l, def Limits) Limits {
	set := func(v *int64, d int64) {
		if *v == 0 {
			*v = d
		}
	}
	if l.WallTime == 0 {
		l.WallTime = def.WallTime
	}
	if l.CPUTime == 0 {
		l.CPUTime = def.CPUTime
	}
	set(&l.MemoryBytes, def.MemoryBytes)
	set(&l.Pids, def.Pids)
	set(&l.OutputBytes, def.OutputBytes)
	set(&l.WorkBytes, def.WorkBytes)
	set(&l.WorkInodes, def.WorkInodes)
	set(&l.TmpBytes, def.TmpBytes)
	set(&l.FileBytes, def.FileBytes)
	if l.OpenFiles == 0 {
		l.OpenFiles = def.OpenFiles
	}
	return l
}

// Kill ends every active run whose labels contain key=value and returns how many
// it signalled.
func (e *Executor) Kill(key, value string) int {
	e.mu.Lock()
	defer e.mu.Unlock()
	n := 0
	for _, r := range e.runs {
		if r.labels[key] == value {
			r.kill(ReasonKilled)
			n++
		}
	}
	return n
}

func newRunID() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// Run runs spec in a fresh sandbox and returns its result. A program that
// fails is a Result. The error is non-nil only when the executor could not
// attempt the run, for example when ctx ended before a slot was free or a
// cgroup or pipe could not be created.
func (e *Executor) Run(ctx context.Context, spec Spec) (Result, error) {
	var steps stepLog
	steps.mark("run_start")
	if spec.RunID == "" {
		spec.RunID = newRunID()
	}
	lim := fillLimits(spec.Limits, e.cfg.Defaults)
	argv, env, files, err := e.command(&spec, lim)
	if err != nil {
		return Result{}, err
	}
	var slot int
	select {
	case slot = <-e.slots:
	case <-ctx.Done():
		return Result{}, fmt.Errorf("waiting for a sandbox slot: %w", ctx.Err())
	}
	defer func() { e.slots <- slot }()
	steps.mark("slot_taken")

	if e.cfg.Insecure {
		return e.runInsecure(ctx, spec, lim, argv, env, files)
	}
	e.mu.Lock()
	closed := e.closed
	e.mu.Unlock()
	if closed {
		return Result{}, ErrClosed
	}
	r := &run{e: e, spec: spec, lim: lim, slot: slot, started: time.Now(), steps: steps}
	r.cfg = initConfig(spec, lim, argv, env, files)
	res, err := e.runOnInit(ctx, r)
	if e.cfg.TraceSteps {
		e.log.Debug("run steps", "run_id", spec.RunID, "steps", formatSteps(res.Steps))
	}
	return res, err
}

// maxHandovers bounds the inits one run is handed to when each is found dead
// at the handover.
const maxHandovers = preparedPerSlot + 1

// runOnInit takes an init of r's slot and runs r on it. An init that exited
// before it read the config never started the program, so the run then goes
// to the next init. A run whose program may have started is never repeated.
func (e *Executor) runOnInit(ctx context.Context, r *run) (Result, error) {
	for handovers := 1; ; handovers++ {
		sp, err := e.takeInit(r.slot, r.spec.Layers)
		if err != nil {
			return Result{}, err
		}
		r.steps.mark("init_taken")
		res, err := r.execute(ctx, sp)
		var gone *initGoneError
		if !errors.As(err, &gone) {
			return res, err
		}
		e.noteDeadInit(r.slot, "at handover", gone.exitState, "")
		if handovers == maxHandovers {
			// The result is a setup failure whose error names the exit.
			return res, nil
		}
		r = &run{e: e, spec: r.spec, lim: r.lim, slot: r.slot, cfg: r.cfg, started: r.started,
			steps: r.steps}
	}
}

// initGoneError reports an init that exited before it read its run's
// config, so the program never started.
type initGoneError struct{ exitState string }

func (e *initGoneError) Error() string {
	return "sandbox-init exited before it read the run's config, with " + e.exitState
}

// run is the state of one sandboxed run.
type run struct {
	e       *Executor
	spec    Spec
	lim     Limits
	slot    int
	cfg     proto.Config
	started time.Time
	steps   stepLog

	group *cgroup.Group
	// cpuBase is the CPU time the init used before the run, while it waited
	// as a prepared init; the run is not charged for it.
	cpuBase time.Duration
	pidfd   int
	proc    *os.Process
	mu      sync.Mutex
	reason  string // set by the first kill
}

// killWith records the first reason and sends SIGKILL to the sandbox's PID 1
// through its pidfd; the kernel then kills the whole PID namespace.
func (r *run) killWith(reason string) {
	r.mu.Lock()
	if r.reason == "" {
		r.reason = reason
	}
	r.mu.Unlock()
	_ = unix.PidfdSendSignal(r.pidfd, unix.SIGKILL, nil, 0)
}

func (r *run) killReason() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.reason
}

func (e *Executor) register(r *run) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.runs[r.spec.RunID] = &activeRun{labels: r.spec.Labels, kill: r.killWith}
}

func (e *Executor) unregister(id string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	delete(e.runs, id)
}

// supervise enforces the wall and CPU limits until PID 1 exits, then collects
// the outputs, the init's status and the cgroup's counters.
func (r *run) supervise(ctx context.Context, sp *sandboxProc, res Result) (Result, error) {
	p := sp.pipes
	stdout := newCappedBuffer(r.lim.OutputBytes, func() { r.killWith(ReasonOutputLimit) })
	stderr := newCappedBuffer(r.lim.OutputBytes, func() { r.killWith(ReasonOutputLimit) })
	var drained sync.WaitGroup
	drained.Add(2)
	go func() { defer drained.Done(); stdout.drain(p.stdoutR) }()
	go func() { defer drained.Done(); stderr.drain(p.stderrR) }()

	// The init writes its status once it has reaped every other process of
	// the sandbox, and it exits right after. So the run is over when the
	// status is in, and cleanUp waits for the init's exit, in which the kernel
	// tears its namespaces down. An init that was killed or failed sends no
	// status. Its run is over only when it has exited, because the kernel
	// kills the rest of its PID namespace before that.
	statusIn := make(chan statusRead, 1)
	go func() { statusIn <- readStatus(p.statusR) }()
	in := r.watch(ctx, statusIn)
	if !in.ok {
		<-sp.exited
	}
	// An init that exited on its own with part of its config unread was
	// dead before the run started.
	var deadAtHandover error
	if !in.ok && r.killReason() == "" && sp.configUnread() {
		deadAtHandover = &initGoneError{exitState: sp.exitState}
	}
	status := in.status
	res.WallTime = time.Since(r.started)
	r.steps.mark("status_read")

	// The init closes its stdout and stderr before it writes the status.
	drained.Wait()
	r.steps.mark("output_drained")
	stats := r.group.Stats()
	r.steps.mark("stats_read")
	if r.e.cfg.TraceSteps {
		res.Steps = mergeSteps(sp.steps, status.Steps, r.steps)
	}

	res.Stdout, res.StdoutTruncated = stdout.result()
	res.Stderr, res.StderrTruncated = stderr.result()
	res.CPUTime = stats.CPUTime - r.cpuBase
	res.PeakMemoryBytes = stats.PeakMemoryBytes
	res.ExitCode, res.Signal = status.ExitCode, status.Signal
	res.Denials, res.Landlock = status.Denials, status.Landlock
	res.Reason = r.classify(status, stats)
	if res.Reason == ReasonSetupFailed {
		res.Error = status.Error
	}
	if deadAtHandover != nil {
		res.Error = deadAtHandover.Error()
	}
	return res, deadAtHandover
}

// watch enforces the wall and CPU limits until the init's status is in, and
// returns it.
func (r *run) watch(ctx context.Context, statusIn <-chan statusRead) statusRead {
	wall := time.NewTimer(r.lim.WallTime)
	defer wall.Stop()
	tick := time.NewTicker(25 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case st := <-statusIn:
			return st
		case <-wall.C:
			r.killWith(ReasonTimeout)
		case <-ctx.Done():
			r.killWith(ReasonKilled)
		case <-tick.C:
			if used, err := r.group.CPUTime(); err == nil && used-r.cpuBase > r.lim.CPUTime {
				r.killWith(ReasonCPU)
			}
			// A refused fork is how fork and thread bombs show; benign programs
			// stay under the limit.
			if r.group.PidsLimitHits() > 0 {
				r.killWith(ReasonPids)
			}
		}
	}
}

// statusRead is the init's status; ok is false when the init ended without one.
type statusRead struct {
	status proto.Status
	ok     bool
}

func readStatus(f io.Reader) statusRead {
	var st proto.Status
	if err := json.NewDecoder(f).Decode(&st); err != nil {
		return statusRead{status: proto.Status{Error: "sandbox-init ended without a status"}}
	}
	return statusRead{status: st, ok: true}
}

// classify picks the reason a run ended: a kill by the runner first, then the
// kernel's counters, then the signal.
func (r *run) classify(st proto.Status, stats cgroup.Stats) string {
	if reason := r.killReason(); reason != "" {
		return reason
	}
	switch {
	case stats.OOMKills > 0:
		return ReasonMemory
	case !st.Started:
		return ReasonSetupFailed
	case st.Signal == int(unix.SIGSYS):
		return ReasonSeccomp
	case stats.PidsLimitHits > 0:
		// The program may have exited on its own after a refused fork, before
		// the poll saw it; the limit was still what stopped it.
		return ReasonPids
	}
	return ReasonExited
}
