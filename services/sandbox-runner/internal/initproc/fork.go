package initproc

import (
	"fmt"
	"runtime"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// child describes the program's process for forkExec. Every pointer the
// child needs is also kept here as a uintptr, so that the child reads only
// plain words between fork and exec.
type child struct {
	argv0 *byte
	argv  []*byte // nil-terminated
	envv  []*byte // nil-terminated
	dir   *byte
	stdin int

	// argvp and envvp point at argv[0] and envv[0].
	argvp, envvp uintptr

	// setCred makes the child drop to uid and gid with no supplementary group.
	setCred  bool
	uid, gid uintptr

	// addressSpace, when set, is the RLIMIT_AS the child sets on itself
	// right before exec.
	addressSpace *unix.Rlimit

	// handled is the set of signals (bit n-1 for signal n) that have a
	// handler in this process. The child resets them to the default, since a
	// handler of the Go runtime must not run in the child before exec.
	handled uint64

	// Words the child and the parent pass to the kernel.
	allSignals, oldMask uint64
	zeroAction          [4]uintptr // struct kernel_sigaction for SIG_DFL
	// errno is set by a child whose step before exec failed.
	errno uint32
}

// newChild prepares the argument vectors of a program.
func newChild(argv0 string, argv, env []string, dir string) (*child, error) {
	c := &child{}
	var err error
	if c.argv0, err = syscall.BytePtrFromString(argv0); err != nil {
		return nil, fmt.Errorf("invalid program path %q: %w", argv0, err)
	}
	if c.argv, err = syscall.SlicePtrFromStrings(argv); err != nil {
		return nil, fmt.Errorf("invalid program arguments: %w", err)
	}
	if c.envv, err = syscall.SlicePtrFromStrings(env); err != nil {
		return nil, fmt.Errorf("invalid program environment: %w", err)
	}
	if c.dir, err = syscall.BytePtrFromString(dir); err != nil {
		return nil, fmt.Errorf("invalid program folder %q: %w", dir, err)
	}
	c.argvp = uintptr(unsafe.Pointer(&c.argv[0]))
	c.envvp = uintptr(unsafe.Pointer(&c.envv[0]))
	c.allSignals = ^uint64(0)
	return c, nil
}

// maxErrno is the largest raw system call result that is not an error. The
// kernel returns -errno for errno 1 to 4095, which compare above it.
const maxErrno = ^uintptr(4095)

// Handler values of struct kernel_sigaction.
const (
	sigDefault = 0
	sigIgnore  = 1
)

// handledSignals returns the signals that have a handler in this process, as
// a set for [child.handled]. Ignored signals stay ignored across the exec, as
// with os.StartProcess.
func handledSignals() uint64 {
	var set uint64
	var act [4]uintptr // struct kernel_sigaction: handler, flags, restorer, mask
	for sig := 1; sig <= 64; sig++ {
		_, _, errno := unix.RawSyscall6(unix.SYS_RT_SIGACTION, uintptr(sig), 0,
			uintptr(unsafe.Pointer(&act[0])), 8, 0, 0)
		if errno == 0 && act[0] != sigDefault && act[0] != sigIgnore {
			set |= 1 << (sig - 1)
		}
	}
	return set
}

// forkExec starts the program described by c as a child of the calling
// thread and returns its PID once the exec has succeeded. It exists because
// os.StartProcess cannot set a resource limit between fork and exec, and
// RLIMIT_AS cannot be set on the init itself, whose Go runtime has reserved
// more address space than the program may have.
//
// Like os.StartProcess, it forks with CLONE_VM and CLONE_VFORK: the child
// shares the init's memory, and the calling thread waits until the child has
// exec'd or exited. Between fork and exec the child makes raw system calls
// only, in its own stack frame, with every signal blocked until its handlers
// are reset. Apart from this frame, it writes to shared memory only the errno
// of a failed step.
func forkExec(c *child) (int, error) {
	c.errno = 0
	pid, errno := forkAndExecInChild(c)
	runtime.KeepAlive(c)
	if errno != 0 {
		return 0, fmt.Errorf("forking: %w", errno)
	}
	if c.errno == 0 {
		return pid, nil
	}
	var ws unix.WaitStatus
	_, _ = unix.Wait4(pid, &ws, 0, nil)
	return 0, syscall.Errno(c.errno)
}

// forkAndExecInChild forks. In the parent it returns the child's PID once the
// child has exec'd or exited. The child never returns: it sets its session,
// credentials, folder, stdin, signals and address-space limit, then execs,
// or stores the errno in c.errno and exits with 253. The child must not
// touch the parent's stack frames, so this function is its own frame.
//
//go:noinline
//go:nosplit
//go:norace
//go:nocheckptr
func forkAndExecInChild(c *child) (pid int, errno syscall.Errno) {
	var r1, sig uintptr
	var err1 syscall.Errno

	// With every signal blocked, no Go handler runs in the child, and the
	// parent's thread cannot be preempted between here and the fork.
	syscall.RawSyscall6(unix.SYS_RT_SIGPROCMASK, unix.SIG_SETMASK,
		uintptr(unsafe.Pointer(&c.allSignals)), uintptr(unsafe.Pointer(&c.oldMask)), 8, 0, 0)
	// The child has run in this frame by the time the parent gets here, so
	// the parent sets every variable it reads from the call's result alone.
	r1 = vforkClone(uintptr(unix.CLONE_VM | unix.CLONE_VFORK | unix.SIGCHLD))
	err1 = 0
	if r1 > maxErrno {
		err1, r1 = syscall.Errno(-r1), 0
	}
	if r1 != 0 || err1 != 0 {
		syscall.RawSyscall6(unix.SYS_RT_SIGPROCMASK, unix.SIG_SETMASK,
			uintptr(unsafe.Pointer(&c.oldMask)), 0, 8, 0, 0)
		return int(r1), err1
	}

	// The child.
	if _, _, err1 = syscall.RawSyscall(unix.SYS_SETSID, 0, 0, 0); err1 != 0 {
		goto fail
	}
	if c.setCred {
		if _, _, err1 = syscall.RawSyscall(unix.SYS_SETGROUPS, 0, 0, 0); err1 != 0 {
			goto fail
		}
		if _, _, err1 = syscall.RawSyscall(unix.SYS_SETGID, c.gid, 0, 0); err1 != 0 {
			goto fail
		}
		if _, _, err1 = syscall.RawSyscall(unix.SYS_SETUID, c.uid, 0, 0); err1 != 0 {
			goto fail
		}
	}
	if _, _, err1 = syscall.RawSyscall(unix.SYS_CHDIR, uintptr(unsafe.Pointer(c.dir)), 0, 0); err1 != 0 {
		goto fail
	}
	if c.stdin != 0 {
		if _, _, err1 = syscall.RawSyscall(unix.SYS_DUP3, uintptr(c.stdin), 0, 0); err1 != 0 {
			goto fail
		}
	}
	for sig = 1; sig <= 64; sig++ {
		if c.handled&(1<<(sig-1)) != 0 {
			syscall.RawSyscall6(unix.SYS_RT_SIGACTION, sig,
				uintptr(unsafe.Pointer(&c.zeroAction)), 0, 8, 0, 0)
		}
	}
	syscall.RawSyscall6(unix.SYS_RT_SIGPROCMASK, unix.SIG_SETMASK,
		uintptr(unsafe.Pointer(&c.oldMask)), 0, 8, 0, 0)
	if c.addressSpace != nil {
		if _, _, err1 = syscall.RawSyscall6(unix.SYS_PRLIMIT64, 0, unix.RLIMIT_AS,
			uintptr(unsafe.Pointer(c.addressSpace)), 0, 0, 0); err1 != 0 {
			goto fail
		}
	}
	_, _, err1 = syscall.RawSyscall(unix.SYS_EXECVE, uintptr(unsafe.Pointer(c.argv0)),
		c.argvp, c.envvp)

fail:
	c.errno = uint32(err1)
	for {
		syscall.RawSyscall(unix.SYS_EXIT_GROUP, 253, 0, 0)
	}
}
