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
	if err := json.NewEncoder(status).Encode(st); err != nil {
		return 2
	}
	return 0
}

func runInit() *proto.Status {
	// Every per-thread layer is set on this thread and the program is forked
	// from it, so the main goroutine keeps it until the process exits.
	runtime.LockOSThread()
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
	var cfg proto.Config
	if err := json.NewDecoder(os.NewFile(proto.ConfigFD, "config")).Decode(&cfg); err != nil {
		st.Error = fmt.Sprintf("reading config: %v", err)
		return st
	}
	// The runner has attached this process to the run's cgroups before it sent
	// the config, so the new cgroup namespace is rooted at the run's cgroup.
	if err := unix.Unshare(unix.CLONE_NEWCGROUP); err != nil {
		st.Error = fmt.Sprintf("creating cgroup namespace: %v", err)
		return st
	}
	// Children get a time namespace where the kernel has one (Linux 5.6+). It
	// comes before setup, which sets the namespace limits to 0.
	if err := unix.Unshare(unix.CLONE_NEWTIME); err != nil && !errors.Is(err, unix.EINVAL) {
		st.Error = fmt.Sprintf("creating time namespace: %v", err)
		return st
	}
	if err := setup(&cfg); err != nil {
		st.Error = err.Error()
		return st
	}
	runProgram(&cfg, st)
	return st
}

func setup(cfg *proto.Config) error {
	if err := buildRoot(cfg); err != nil {
		return err
	}
	if err := unix.Sethostname([]byte(cfg.Hostname)); err != nil {
		return fmt.Errorf("setting host name: %w", err)
	}
	if !cfg.Layers.NoReadOnly {
		if err := makeRootReadOnly(); err != nil {
			return err
		}
	}
	return nil
}

// watchLifeline kills every process in the sandbox when the runner goes away.
func watchLifeline() {
	f := os.NewFile(proto.LifelineFD, "lifeline")
	_, _ = io.Copy(io.Discard, f)
	_ = unix.Kill(-1, unix.SIGKILL)
	os.Exit(137)
}

// runProgram starts the program, waits for it and reaps every other process.
func runProgram(cfg *proto.Config, st *proto.Status) {
	if len(cfg.Argv) == 0 {
		st.Error = "empty argv"
		return
	}
	pid, listener, abi, err := startProgram(cfg)
	if err != nil {
		st.Error = err.Error()
		return
	}
	st.Started = true
	st.Landlock = abi

	var mu sync.Mutex
	if listener >= 0 {
		go answerNotifications(listener, &mu, st)
	}
	reap(pid, cfg.Layers.NoTreeKill, &mu, st)
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
		if pid == mainPID && !noTreeKill {
			_ = unix.Kill(-1, unix.SIGKILL)
		}
	}
}
