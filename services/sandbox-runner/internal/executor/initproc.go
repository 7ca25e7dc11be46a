package executor

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/nodexsec/nodex/services/sandbox-runner/internal/cgroup"
)

// sandboxProc is a started sandbox-init that waits for its config: PID 1 of
// fresh namespaces with the slot's id map, attached to a fresh cgroup that
// has no limits yet.
type sandboxProc struct {
	group *cgroup.Group
	pipes *pipes
	proc  *os.Process
	pidfd int
}

// spawnInit starts a sandbox-init for slot. Its cgroup name is random, since
// the run it will serve is not known yet.
func (e *Executor) spawnInit(slot int) (*sandboxProc, error) {
	group, err := e.cgroups.Create(newRunID(), cgroup.Limits{})
	if err != nil {
		return nil, err
	}
	sp := &sandboxProc{group: group, pidfd: -1}
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
	// On v1 a process's earlier charges stay where they were, so the init is
	// attached before it reads its config and allocates for the run. It blocks
	// on the config until then.
	if err := group.Attach(sp.proc.Pid); err != nil {
		sp.discard()
		return nil, fmt.Errorf("attaching sandbox to cgroups: %w", err)
	}
	return sp, nil
}

// sendConfig hands the init its config; the init then builds the sandbox and
// starts the program.
func (sp *sandboxProc) sendConfig(cfg any) {
	go func() {
		_ = json.NewEncoder(sp.pipes.configW).Encode(cfg)
		sp.pipes.configW.Close()
	}()
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
	defer func() {
		_ = unix.Close(sp.pidfd)
		sp.pidfd = -1
		sp.pipes.closeAll()
		if err := sp.group.Remove(); err != nil {
			r.e.log.Error("removing run cgroup", "run_id", r.spec.RunID, "error", err)
		}
	}()
	r.group, r.proc, r.pidfd = sp.group, sp.proc, sp.pidfd
	r.cpuBase, _ = r.group.CPUTime()
	limits := cgroup.Limits{MemoryBytes: r.lim.MemoryBytes, Pids: r.lim.Pids, CPUCores: 1}
	if r.spec.Layers.NoCgroupLimits {
		limits = cgroup.Limits{}
	}
	err := r.group.SetLimits(limits)
	if err != nil {
		_ = unix.PidfdSendSignal(sp.pidfd, unix.SIGKILL, nil, 0)
		_, _ = sp.proc.Wait()
		return res, err
	}
	r.e.register(r)
	defer r.e.unregister(r.spec.RunID)
	sp.sendConfig(&r.cfg)
	return r.supervise(ctx, sp.pipes, res)
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
