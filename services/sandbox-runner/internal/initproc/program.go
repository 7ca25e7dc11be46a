package initproc

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/nodexsec/nodex/services/sandbox-runner/internal/proto"
	"github.com/nodexsec/nodex/services/sandbox-runner/internal/seccomp"
)

// prepared holds what prepare built ahead of the run for startProgram.
type prepared struct {
	layers   proto.Layers
	uid      int
	gid      int
	filter   []unix.SockFilter // nil without seccomp
	landlock *landlockRuleset  // nil without Landlock
	// handledSignals are the signals with a Go handler, for [child.handled].
	handledSignals uint64
}

// prepareRestrictions empties the calling thread's capability bounding,
// ambient and inheritable sets, builds the seccomp program and starts the
// Landlock ruleset. None of these needs the run's config. The thread keeps
// its effective set, so it can still mount the run's file systems.
func prepareRestrictions(prep *proto.Prepare) (*prepared, error) {
	pr := &prepared{layers: prep.Layers, uid: prep.UID, gid: prep.GID,
		handledSignals: handledSignals()}
	if !prep.Layers.NoCredDrop {
		if err := dropInheritableCapabilities(); err != nil {
			return nil, err
		}
	}
	if !prep.Layers.NoSeccomp {
		pr.filter = seccomp.Build()
	}
	if !prep.Layers.NoLandlock {
		var err error
		if pr.landlock, err = newLandlockRuleset(); err != nil {
			return nil, err
		}
	}
	mark("restrictions_prepared")
	return pr, nil
}

// startProgram restricts the init's main thread with every layer that a child
// inherits, then forks and execs the program from that thread as the program's
// user. It returns the program's PID, the seccomp listener (-1 without
// seccomp) and the Landlock ABI applied.
//
// The caller must hold the thread (runtime.LockOSThread) from before this call
// until the process exits: the attributes below are per thread, and the fork
// happens on the calling thread. Restricting the init's thread rather than a
// second exec'd stage saves a Go runtime start per run. Afterwards the thread
// needs only wait4, kill and pipe writes, which the filter allows.
func startProgram(pr *prepared, cfg *proto.Config) (pid, listener, abi int, err error) {
	stdin, err := openStdin(cfg.Stdin)
	if err != nil {
		return 0, -1, 0, err
	}
	defer stdin.Close()

	listener, abi, err = restrictSelf(pr, cfg)
	if err != nil {
		return 0, -1, 0, err
	}
	mark("seccomp_installed")
	c, err := newChild(cfg.Argv[0], cfg.Argv, cfg.Env, cfg.Dir)
	if err != nil {
		return 0, listener, abi, err
	}
	c.stdin = int(stdin.Fd())
	c.handled = pr.handledSignals
	if !pr.layers.NoCredDrop {
		c.setCred, c.uid, c.gid = true, uintptr(pr.uid), uintptr(pr.gid)
	}
	if !pr.layers.NoRlimits {
		c.addressSpace = addressSpaceLimit(cfg)
	}
	if pid, err = forkExec(c); err != nil {
		return 0, listener, abi, fmt.Errorf("starting %s: %w", cfg.Argv[0], err)
	}
	return pid, listener, abi, nil
}

// addressSpaceLimit returns the run's RLIMIT_AS, or nil. The init cannot
// lower its own: the Go runtime reserves over 1 GiB of address space, so any
// later allocation of the init would fail. So the program's process sets it
// on itself between fork and exec.
func addressSpaceLimit(cfg *proto.Config) *unix.Rlimit {
	for _, rl := range cfg.Rlimits {
		if rl.Resource == unix.RLIMIT_AS {
			return &unix.Rlimit{Cur: rl.Cur, Max: rl.Max}
		}
	}
	return nil
}

// restrictSelf applies to the calling thread the layers the program inherits
// that prepareRestrictions left: the rlimits (process wide), no_new_privs,
// Landlock and the seccomp filter (last).
func restrictSelf(pr *prepared, cfg *proto.Config) (listener, abi int, err error) {
	if !pr.layers.NoRlimits {
		for _, rl := range cfg.Rlimits {
			if rl.Resource == unix.RLIMIT_AS {
				continue // see addressSpaceLimit
			}
			lim := unix.Rlimit{Cur: rl.Cur, Max: rl.Max}
			if err := unix.Prlimit(0, rl.Resource, &lim, nil); err != nil {
				return -1, 0, fmt.Errorf("setting rlimit %d: %w", rl.Resource, err)
			}
		}
	}
	mark("rlimits_set")
	if !pr.layers.NoNewPrivsOff {
		if err := thisThread(unix.SYS_PRCTL, unix.PR_SET_NO_NEW_PRIVS, 1, 0); err != nil {
			return -1, 0, fmt.Errorf("setting no_new_privs: %w", err)
		}
	}
	if pr.landlock != nil {
		if abi, err = pr.landlock.restrictSelf(); err != nil {
			return -1, 0, err
		}
	}
	mark("landlock_applied")
	listener = -1
	if pr.filter != nil {
		if listener, err = seccomp.Install(pr.filter); err != nil {
			return -1, 0, err
		}
	}
	return listener, abi, nil
}

// thisThread runs a system call that sets a per-thread attribute on the
// calling thread only.
func thisThread(trap, a1, a2, a3 uintptr) error {
	if _, _, errno := unix.RawSyscall(trap, a1, a2, a3); errno != 0 {
		return errno
	}
	return nil
}

// dropInheritableCapabilities empties the bounding, ambient and inheritable
// sets of the calling thread. The thread keeps its permitted and effective
// sets, because it needs CAP_SETUID and CAP_SETGID to start the program. The
// program loses them at setuid to a non-zero id, and with an empty bounding
// set it cannot gain any at exec.
func dropInheritableCapabilities() error {
	last := lastCap()
	for c := 0; c <= last; c++ {
		if err := thisThread(unix.SYS_PRCTL, unix.PR_CAPBSET_DROP, uintptr(c), 0); err != nil {
			return fmt.Errorf("dropping capability %d from the bounding set: %w", c, err)
		}
	}
	if err := thisThread(unix.SYS_PRCTL, unix.PR_CAP_AMBIENT, unix.PR_CAP_AMBIENT_CLEAR_ALL, 0); err != nil {
		return fmt.Errorf("clearing ambient capabilities: %w", err)
	}
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		return fmt.Errorf("reading capabilities: %w", err)
	}
	data[0].Inheritable, data[1].Inheritable = 0, 0
	if err := thisThread(unix.SYS_CAPSET, uintptr(unsafe.Pointer(&hdr)),
		uintptr(unsafe.Pointer(&data[0])), 0); err != nil {
		return fmt.Errorf("clearing inheritable capabilities: %w", err)
	}
	return nil
}

func lastCap() int {
	b, err := os.ReadFile("/proc/sys/kernel/cap_last_cap")
	if err != nil {
		return 40
	}
	n, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		return 40
	}
	return n
}

// openStdin returns /dev/null, or a sealed memfd holding data, so the program
// reads its input without it touching any file system.
func openStdin(data []byte) (*os.File, error) {
	if len(data) == 0 {
		f, err := os.Open("/dev/null")
		if err != nil {
			return nil, fmt.Errorf("opening /dev/null: %w", err)
		}
		return f, nil
	}
	fd, err := unix.MemfdCreate("stdin", unix.MFD_CLOEXEC|unix.MFD_ALLOW_SEALING)
	if err != nil {
		return nil, fmt.Errorf("creating stdin memfd: %w", err)
	}
	f := os.NewFile(uintptr(fd), "stdin")
	if _, err := f.Write(data); err != nil {
		f.Close()
		return nil, fmt.Errorf("writing stdin: %w", err)
	}
	seals := unix.F_SEAL_SEAL | unix.F_SEAL_SHRINK | unix.F_SEAL_GROW | unix.F_SEAL_WRITE
	if _, err := unix.FcntlInt(uintptr(fd), unix.F_ADD_SEALS, seals); err != nil {
		f.Close()
		return nil, fmt.Errorf("sealing stdin: %w", err)
	}
	if _, err := f.Seek(0, 0); err != nil {
		f.Close()
		return nil, fmt.Errorf("rewinding stdin: %w", err)
	}
	return f, nil
}
