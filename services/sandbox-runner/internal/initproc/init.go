// Package initproc is sandbox-init: PID 1 of a sandbox's namespaces. It builds
// the root file system and restricts its main thread with every layer the
// program inherits: capability bounding set, rlimits, no_new_privs, Landlock
// and seccomp. It then starts the program as the program's user, replies to
// the seccomp notifications, reaps every process, and reports the outcome on
// a status descriptor.
//
// It imports no NATS, OPA or OpenTelemetry code, so its start costs little.
package initproc

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"sync"

	"golang.org/x/sys/unix"

	"github.com/nodexsec/nodex/services/sandbox-runner/internal/proto"
	"github.com/nodexsec/nodex/services/sandbox-runner/internal/seccomp"
)

// Main runs sandbox-init and returns the process exit code.
func Main() int {
	status := os.NewFile(proto.StatusFD, "status")
	st := runInit()
	// The runner takes the run as over when the status is in and its output
	// pipes are at EOF, so the init lets go of them first. Nothing of the
	// sandbox writes to them any more.
	_ = unix.Close(1)
	_ = unix.Close(2)
	if err := json.NewEncoder(status).Encode(st); err != nil {
		return 2
	}
	return 0
}

func runInit() *proto.Status {
	// Every per-thread layer is set on this thread and the program is forked
	// from it, so the main goroutine keeps it until the process exits.
	runtime.LockOSThread()
	mark("init_started")
	st := &proto.Status{}
	// The program must not inherit the runner's descriptors, nor any that the
	// runner itself inherited without close-on-exec.
	if err := unix.CloseRange(proto.ConfigFD, ^uint(0), unix.CLOSE_RANGE_CLOEXEC); err != nil {
		st.Error = fmt.Sprintf("marking descriptors close-on-exec: %v", err)
		return st
	}
	go watchLifeline()

	// Non-dumpable: the sandbox's user cannot read PID 1's environ, exe or memory.
	if err := unix.Prctl(unix.PR_SET_DUMPABLE, 0, 0, 0, 0); err != nil {
		st.Error = fmt.Sprintf("setting PID 1 not dumpable: %v", err)
		return st
	}
	dec := json.NewDecoder(os.NewFile(proto.ConfigFD, "config"))
	var prep proto.Prepare
	if err := dec.Decode(&prep); err != nil {
		st.Error = fmt.Sprintf("reading the prepare message: %v", err)
		return st
	}
	mark("prepare_read")
	if prep.TraceSteps {
		defer func() { st.Steps = steps }()
	}
	pr, err := prepare(&prep)
	if err != nil {
		st.Error = err.Error()
		return st
	}
	var cfg proto.Config
	if err := dec.Decode(&cfg); err != nil {
		st.Error = fmt.Sprintf("reading config: %v", err)
		return st
	}
	mark("config_read")
	if err := mountRunFS(&cfg, &prep); err != nil {
		st.Error = err.Error()
		return st
	}
	mark("work_written")
	runProgram(pr, &cfg, st)
	return st
}

// prepare builds everything that does not depend on the run: the namespaces
// that only the init can create, the root (read-only, pivoted), the host
// name, the dropped capability sets, the seccomp program and the fixed
// Landlock rules.
func prepare(prep *proto.Prepare) (*prepared, error) {
	// The runner has attached this process to its cgroups before it sent the
	// prepare message, so the new cgroup namespace is rooted at the run's cgroup.
	if err := unix.Unshare(unix.CLONE_NEWCGROUP); err != nil {
		return nil, fmt.Errorf("creating cgroup namespace: %w", err)
	}
	// Children get a time namespace where the kernel has one (Linux 5.6+). It
	// comes before buildRoot, which sets the namespace limits to 0.
	if err := unix.Unshare(unix.CLONE_NEWTIME); err != nil && !errors.Is(err, unix.EINVAL) {
		return nil, fmt.Errorf("creating time namespace: %w", err)
	}
	mark("namespaces")
	if err := buildRoot(prep); err != nil {
		return nil, err
	}
	if err := unix.Sethostname([]byte(prep.Hostname)); err != nil {
		return nil, fmt.Errorf("setting host name: %w", err)
	}
	if !prep.Layers.NoReadOnly {
		if err := makeRootReadOnly(); err != nil {
			return nil, err
		}
	}
	mark("root_read_only")
	return prepareRestrictions(prep)
}

// watchLifeline kills every process in the sandbox when the runner goes away.
func watchLifeline() {
	f := os.NewFile(proto.LifelineFD, "lifeline")
	_, _ = io.Copy(io.Discard, f)
	_ = unix.Kill(-1, unix.SIGKILL)
	os.Exit(137)
}

// runProgram starts the program, waits for it and reaps every other process.
func runProgram(pr *prepared, cfg *proto.Config, st *proto.Status) {
	if len(cfg.Argv) == 0 {
		st.Error = "empty argv"
		return
	}
	pid, listener, abi, err := startProgram(pr, cfg)
	if err != nil {
		st.Error = err.Error()
		return
	}
	mark("program_started")
	st.Started = true
	st.Landlock = abi

	var mu sync.Mutex
	if listener >= 0 {
		go answerNotifications(listener, &mu, st)
	}
	reap(pid, pr.layers.NoTreeKill, &mu, st)
	mark("reaped")
}

// answerNotifications records each filtered call before it replies EPERM, so
// a call is on record before the calling process can continue or exit.
func answerNotifications(listener int, mu *sync.Mutex, st *proto.Status) {
	for {
		n, err := seccomp.Receive(listener)
		if errors.Is(err, unix.EINTR) || errors.Is(err, unix.ENOENT) {
			continue
		}
		if err != nil {
			return
		}
		mu.Lock()
		st.Denials = append(st.Denials, proto.Denial{
			Syscall: seccomp.Name(n.Nr), Nr: n.Nr, Arch: n.Arch, Args: n.Args,
		})
		mu.Unlock()
		_ = seccomp.Deny(listener, n.ID, unix.EPERM)
	}
}

// reap waits for every child. When the program exits, every other process in
// the PID namespace is killed, including ones that called setsid or forked
// twice, since they were reparented to this process.
func reap(mainPID int, noTreeKill bool, mu *sync.Mutex, st *proto.Status) {
	for {
		var ws unix.WaitStatus
		var ru unix.Rusage
		pid, err := unix.Wait4(-1, &ws, 0, &ru)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			break // ECHILD: nothing left
		}
		mu.Lock()
		st.UserTimeUs += ru.Utime.Sec*1e6 + ru.Utime.Usec
		st.SystemTimeUs += ru.Stime.Sec*1e6 + ru.Stime.Usec
		st.MaxRSSKiB = max(st.MaxRSSKiB, ru.Maxrss)
		if pid == mainPID {
			if ws.Signaled() {
				st.Signal = int(ws.Signal())
				st.ExitCode = 128 + st.Signal
			} else {
				st.ExitCode = ws.ExitStatus()
			}
		}
		mu.Unlock()
		if pid == mainPID {
			mark("program_exited")
			if !noTreeKill {
				_ = unix.Kill(-1, unix.SIGKILL)
			}
		}
	}
}
