package executor

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/nodexsec/nodex/services/sandbox-runner/internal/cgroup"
	"github.com/nodexsec/nodex/services/sandbox-runner/internal/proto"
)

// sandboxProc is a started sandbox-init that prepares the sandbox and then
// waits for its run: PID 1 of fresh namespaces with the slot's id map,
// attached to a fresh cgroup that has the default limits.
type sandboxProc struct {
	group *cgroup.Group
	// limits are the limits written to group so far.
	limits cgroup.Limits
	layers proto.Layers
	pipes  *pipes
	proc   *os.Process
	pidfd  int
	steps  stepLog
	// exited is closed when proc has exited and been waited for, with its
	// exit status in exitState; execute starts the wait.
	exited    chan struct{}
	exitState string
	// configWritten receives the result of the config's write; sendConfig
	// makes it.
	configWritten chan error
	// replace makes cleanUp prepare a new init for slot.
	replace bool
	slot    int
}

// cgroupLimits returns the cgroup limits of a run with limits lim.
func cgroupLimits(lim Limits, layers proto.Layers) cgroup.Limits {
	if layers.NoCgroupLimits {
		return cgroup.Limits{}
	}
	return cgroup.Limits{MemoryBytes: lim.MemoryBytes, Pids: lim.Pids, CPUCores: 1}
}

// spawnInit starts a sandbox-init for slot, for runs with the given layers,
// and sends it the prepare message. Its cgroup name is random, since the run
// it will serve is not known yet, and its limits are the defaults, which most
// runs keep.
func (e *Executor) spawnInit(slot int, layers proto.Layers) (*sandboxProc, error) {
	sp := &sandboxProc{layers: layers, pidfd: -1}
	sp.steps.mark("spawn_start")
	sp.limits = cgroupLimits(e.cfg.Defaults, layers)
	group, err := e.cgroups.Create(newRunID(), sp.limits)
	if err != nil {
		return nil, err
	}
	sp.group = group
	sp.steps.mark("cgroup_created")
	if sp.pipes, err = openPipes(); err != nil {
		sp.discard()
		return nil, err
	}
	devNull, err := os.Open(os.DevNull)
	if err != nil {
		sp.discard()
		return nil, fmt.Errorf("opening %s: %w", os.DevNull, err)
	}
	defer devNull.Close()

	p := sp.pipes
	attr := &os.ProcAttr{
		Env:   []string{},
		Files: []*os.File{devNull, p.stdoutW, p.stderrW, p.configR, p.statusW, p.lifeR},
		Sys:   e.sysProcAttr(slot, &sp.pidfd),
	}
	sp.proc, err = e.spawner.start(e.cfg.InitPath, []string{"sandbox-init"}, attr)
	p.closeChildEnds()
	if err != nil {
		sp.discard()
		return nil, fmt.Errorf("starting sandbox-init: %w", err)
	}
	sp.steps.mark("init_spawned")
	// On v1 a process's earlier charges stay where they were, so the init is
	// attached before it reads the prepare message and allocates. It blocks on
	// that message until then.
	if err := group.Attach(sp.proc.Pid); err != nil {
		sp.discard()
		return nil, fmt.Errorf("attaching sandbox to cgroups: %w", err)
	}
	sp.steps.mark("init_attached")
	// The message is a few KiB, well under a pipe's buffer, so the write does
	// not wait for the init.
	if err := json.NewEncoder(p.configW).Encode(e.prepareMessage(layers)); err != nil {
		sp.discard()
		return nil, fmt.Errorf("sending the prepare message to sandbox-init: %w", err)
	}
	sp.steps.mark("prepare_sent")
	return sp, nil
}

// sendConfig hands the init its run's config; the init then mounts the run's
// file systems and starts the program. The encoding happens here and the write
// in the background, since the program's files may exceed a pipe's buffer.
// The write's error goes to sp.configWritten.
func (sp *sandboxProc) sendConfig(cfg *proto.Config) error {
	b, err := json.Marshal(cfg)
	if err != nil {
		return fmt.Errorf("encoding the sandbox config: %w", err)
	}
	sp.configWritten = make(chan error, 1)
	go func() {
		_, err := sp.pipes.configW.Write(b)
		sp.configWritten <- err
	}()
	return nil
}

// configUnread reports whether the init, which has exited, left part of its
// config unread. The init decodes the whole config before it starts the
// program, so an init with unread config bytes never started it. The write
// fails with EPIPE when the init was gone before it ended, and a config
// that fit in the pipe's buffer stays there, counted by FIONREAD on the
// write end. A failed check counts as read, so that a started run is
// never taken for one that did not start.
func (sp *sandboxProc) configUnread() bool {
	if sp.configWritten == nil {
		return false
	}
	// Nothing reads the pipe any more, so the write has returned or will
	// return at once.
	if err := <-sp.configWritten; err != nil {
		return errors.Is(err, syscall.EPIPE)
	}
	raw, err := sp.pipes.configW.SyscallConn()
	if err != nil {
		return false
	}
	unread := 0
	ctlErr := raw.Control(func(fd uintptr) {
		// TIOCINQ is FIONREAD's number on Linux, and x/sys/unix names only it.
		unread, err = unix.IoctlGetInt(int(fd), unix.TIOCINQ)
	})
	return ctlErr == nil && err == nil && unread > 0
}

// hasExited reports whether the init has exited: its pidfd polls readable
// from then on, before and after it is reaped.
func (sp *sandboxProc) hasExited() bool {
	fds := []unix.PollFd{{Fd: int32(sp.pidfd), Events: unix.POLLIN}}
	for {
		n, err := unix.Poll(fds, 0)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		return err == nil && n > 0 && fds[0].Revents&unix.POLLIN != 0
	}
}

// reapIdle waits for a prepared init that has exited, releases its pipes,
// pidfd and cgroup, and returns its exit status and the error of the status
// it sent, if it sent one (a failed preparation does). The error is that of
// the cgroup's removal.
func (sp *sandboxProc) reapIdle() (state, detail string, err error) {
	state = "unknown"
	if ps, err := sp.proc.Wait(); err == nil {
		state = ps.String()
	}
	// The init and every other process of its namespaces are gone, so the
	// status pipe has no writer left and the read does not block.
	if st := readStatus(sp.pipes.statusR); st.ok {
		detail = st.status.Error
	}
	sp.proc = nil
	return state, detail, sp.discard()
}

// discard kills the init if it runs, waits for it, and releases its pipes,
// pidfd and cgroup.
func (sp *sandboxProc) discard() error {
	if sp.proc != nil {
		_ = unix.PidfdSendSignal(sp.pidfd, unix.SIGKILL, nil, 0)
		_, _ = sp.proc.Wait()
	}
	sp.release()
	return sp.group.Remove()
}

// release closes the pipes and the pidfd.
func (sp *sandboxProc) release() {
	if sp.pipes != nil {
		sp.pipes.closeAll()
	}
	if sp.pidfd >= 0 {
		unix.Close(sp.pidfd)
		sp.pidfd = -1
	}
}

func (e *Executor) sysProcAttr(slot int, pidfd *int) *syscall.SysProcAttr {
	a := &syscall.SysProcAttr{
		Cloneflags: syscall.CLONE_NEWUSER | syscall.CLONE_NEWPID | syscall.CLONE_NEWNET |
			syscall.CLONE_NEWNS | syscall.CLONE_NEWIPC | syscall.CLONE_NEWUTS,
		Pdeathsig:  syscall.SIGKILL,
		Setsid:     true,
		PidFD:      pidfd,
		Credential: &syscall.Credential{Uid: 0, Gid: 0},
	}
	if e.rootful {
		setup := e.cfg.HostIDBase + 2*slot
		a.UidMappings = []syscall.SysProcIDMap{
			{ContainerID: 0, HostID: setup, Size: 1},
			{ContainerID: programID, HostID: setup + 1, Size: 1},
		}
		a.GidMappings = a.UidMappings
		a.GidMappingsEnableSetgroups = true
		return a
	}
	// Unprivileged: the kernel allows only a map of the runner's own ids, so the
	// program keeps inside id 0, without capabilities.
	// NOTE: this path has not run here; the tests run as root.
	a.UidMappings = []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Geteuid(), Size: 1}}
	a.GidMappings = []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Getegid(), Size: 1}}
	a.Credential.NoSetGroups = true
	return a
}

// execute runs on a started init: it sets the run's limits, sends the config
// and supervises the run to its end.
func (r *run) execute(ctx context.Context, sp *sandboxProc) (Result, error) {
	res := Result{RunID: r.spec.RunID, Limits: r.lim}
	sp.exited = make(chan struct{})
	go func() {
		sp.exitState = "unknown"
		if ps, err := sp.proc.Wait(); err == nil {
			sp.exitState = ps.String()
		}
		close(sp.exited)
	}()
	defer r.e.cleanUp(sp, r.spec.RunID)
	r.group, r.proc, r.pidfd = sp.group, sp.proc, sp.pidfd
	r.cpuBase, _ = r.group.CPUTime()
	if want := cgroupLimits(r.lim, r.spec.Layers); want != sp.limits {
		if err := r.group.SetLimits(want); err != nil {
			_ = unix.PidfdSendSignal(sp.pidfd, unix.SIGKILL, nil, 0)
			return res, err
		}
	}
	r.steps.mark("limits_set")
	r.e.register(r)
	defer r.e.unregister(r.spec.RunID)
	// A run cancelled while it waited for its slot, as when its identity
	// is suspended, must not start the program at all.
	if err := ctx.Err(); err != nil {
		_ = unix.PidfdSendSignal(sp.pidfd, unix.SIGKILL, nil, 0)
		return res, fmt.Errorf("run %s cancelled before it started: %w", r.spec.RunID, err)
	}
	if r.e.beforeConfig != nil {
		r.e.beforeConfig(sp)
	}
	if err := sp.sendConfig(&r.cfg); err != nil {
		_ = unix.PidfdSendSignal(sp.pidfd, unix.SIGKILL, nil, 0)
		return res, err
	}
	r.steps.mark("config_sent")
	return r.supervise(ctx, sp, res)
}

// cleanUp waits, in the background, for the init of a finished run to exit,
// then releases its pipes and pidfd and removes its cgroups. The run's other
// processes are gone by then (see supervise). Close waits for every cleanUp.
func (e *Executor) cleanUp(sp *sandboxProc, runID string) {
	e.cleanups.Add(1)
	go func() {
		defer e.cleanups.Done()
		if sp.replace {
			e.prewarm(sp.slot)
		}
		// Closing the lifeline makes an init that is still running kill its
		// namespace and exit.
		sp.pipes.lifeW.Close()
		<-sp.exited
		sp.release()
		if err := sp.group.Remove(); err != nil {
			e.log.Error("removing run cgroup", "run_id", runID, "error", err)
		}
	}()
}

type pipes struct {
	stdoutR, stdoutW, stderrR, stderrW *os.File
	configR, configW, statusR, statusW *os.File
	lifeR, lifeW                       *os.File
}

func openPipes() (*pipes, error) {
	p := &pipes{}
	pairs := []struct{ r, w **os.File }{
		{&p.stdoutR, &p.stdoutW}, {&p.stderrR, &p.stderrW},
		{&p.configR, &p.configW}, {&p.statusR, &p.statusW}, {&p.lifeR, &p.lifeW},
	}
	for _, pr := range pairs {
		r, w, err := os.Pipe()
		if err != nil {
			p.closeAll()
			return nil, fmt.Errorf("creating pipe: %w", err)
		}
		*pr.r, *pr.w = r, w
	}
	return p, nil
}

func (p *pipes) closeChildEnds() {
	for _, f := range []*os.File{p.stdoutW, p.stderrW, p.configR, p.statusW, p.lifeR} {
		f.Close()
	}
}

func (p *pipes) closeAll() {
	for _, f := range []*os.File{p.stdoutR, p.stdoutW, p.stderrR, p.stderrW, p.configR,
		p.configW, p.statusR, p.statusW, p.lifeR, p.lifeW} {
		if f != nil {
			f.Close()
		}
	}
}
