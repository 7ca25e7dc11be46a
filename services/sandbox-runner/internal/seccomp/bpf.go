// Package seccomp builds the sandbox's seccomp filter as classic BPF, in pure Go,
// and installs it on the calling thread.
//
// The filter is an allowlist: a system call that is not listed returns ENOSYS, so
// a new kernel call is denied until someone decides it is safe. Calls that hostile
// code makes and benign code does not go to the supervisor through user
// notification, which records each one and replies EPERM.
package seccomp

import (
	"fmt"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Filter return values from linux/seccomp.h.
const (
	retKillProcess = 0x80000000
	retErrno       = 0x00050000
	retUserNotif   = 0x7fc00000
	retAllow       = 0x7fff0000
)

// Offsets into struct seccomp_data.
const (
	offNr   = 0
	offArch = 4
	offArgs = 16
)

// x32SyscallBit marks the x32 ABI's system call numbers on x86_64.
const x32SyscallBit = 0x40000000

// nsCloneFlags are the clone flags that create namespaces.
const nsCloneFlags = unix.CLONE_NEWNS | unix.CLONE_NEWCGROUP | unix.CLONE_NEWUTS |
	unix.CLONE_NEWIPC | unix.CLONE_NEWUSER | unix.CLONE_NEWPID | unix.CLONE_NEWNET

type program struct {
	insns []unix.SockFilter
}

func (p *program) stmt(code uint16, k uint32) {
	p.insns = append(p.insns, unix.SockFilter{Code: code, K: k})
}

func (p *program) jump(code uint16, k uint32, jt, jf uint8) {
	p.insns = append(p.insns, unix.SockFilter{Code: code, Jt: jt, Jf: jf, K: k})
}

func (p *program) ret(v uint32) { p.stmt(unix.BPF_RET|unix.BPF_K, v) }

func (p *program) loadNr() { p.stmt(unix.BPF_LD|unix.BPF_W|unix.BPF_ABS, offNr) }

// loadArgLow loads the low 32 bits of argument i (little-endian layout).
func (p *program) loadArgLow(i int) {
	p.stmt(unix.BPF_LD|unix.BPF_W|unix.BPF_ABS, uint32(offArgs+8*i))
}

// onNr emits "if nr == n { block }" where block must end in a return, so the
// accumulator still holds nr when the block is skipped.
func (p *program) onNr(n uintptr, block func(b *program)) {
	var b program
	block(&b)
	if len(b.insns) > 255 {
		panic("seccomp: block too long for a BPF jump")
	}
	p.jump(unix.BPF_JMP|unix.BPF_JEQ|unix.BPF_K, uint32(n), 0, uint8(len(b.insns)))
	p.insns = append(p.insns, b.insns...)
}

// Build returns the filter program for the native architecture.
func Build() []unix.SockFilter {
	var p program
	p.stmt(unix.BPF_LD|unix.BPF_W|unix.BPF_ABS, offArch)
	p.jump(unix.BPF_JMP|unix.BPF_JEQ|unix.BPF_K, nativeArch, 1, 0)
	p.ret(retKillProcess) // another ABI, such as i386 through int 0x80

	p.loadNr()
	p.jump(unix.BPF_JMP|unix.BPF_JGE|unix.BPF_K, x32SyscallBit, 0, 1)
	p.ret(retKillProcess) // x32 numbers

	p.onNr(unix.SYS_CLONE, func(b *program) {
		b.loadArgLow(0)
		b.jump(unix.BPF_JMP|unix.BPF_JSET|unix.BPF_K, nsCloneFlags, 0, 1)
		b.ret(retUserNotif)
		b.ret(retAllow)
	})
	// glibc falls back to clone when clone3 returns ENOSYS, and clone3's flags sit
	// in memory that BPF cannot read.
	p.onNr(unix.SYS_CLONE3, func(b *program) { b.ret(retErrno | uint32(unix.ENOSYS)) })
	for _, nr := range []uintptr{unix.SYS_SOCKET, unix.SYS_SOCKETPAIR} {
		p.onNr(nr, func(b *program) {
			b.loadArgLow(0)
			b.jump(unix.BPF_JMP|unix.BPF_JEQ|unix.BPF_K, unix.AF_UNIX, 0, 1)
			b.ret(retAllow)
			b.ret(retUserNotif)
		})
	}
	p.onNr(unix.SYS_IOCTL, func(b *program) {
		b.loadArgLow(1)
		for _, req := range []uint32{unix.TIOCSTI, unix.TIOCLINUX, unix.TIOCSETD} {
			b.jump(unix.BPF_JMP|unix.BPF_JEQ|unix.BPF_K, req, 0, 1)
			b.ret(retUserNotif)
		}
		b.ret(retAllow)
	})
	p.onNr(unix.SYS_PERSONALITY, func(b *program) {
		b.loadArgLow(0)
		b.jump(unix.BPF_JMP|unix.BPF_JEQ|unix.BPF_K, 0, 2, 0)          // PER_LINUX
		b.jump(unix.BPF_JMP|unix.BPF_JEQ|unix.BPF_K, 0xffffffff, 1, 0) // query
		b.ret(retUserNotif)
		b.ret(retAllow)
	})
	for _, nr := range killed {
		p.onNr(nr, func(b *program) { b.ret(retKillProcess) })
	}
	for _, nr := range notified {
		p.onNr(nr, func(b *program) { b.ret(retUserNotif) })
	}
	for _, nr := range allowed {
		p.jump(unix.BPF_JMP|unix.BPF_JEQ|unix.BPF_K, uint32(nr), 0, 1)
		p.ret(retAllow)
	}
	p.ret(retErrno | uint32(unix.ENOSYS))
	return p.insns
}

// Install installs the filter on the calling thread only and returns the user
// notification listener. The caller must have set no_new_privs on the thread
// (or hold CAP_SYS_ADMIN in its user namespace) and must keep the thread
// (runtime.LockOSThread) for as long as the filter matters.
func Install(insns []unix.SockFilter) (listener int, err error) {
	prog := unix.SockFprog{Len: uint16(len(insns)), Filter: &insns[0]}
	fd, _, errno := unix.RawSyscall(unix.SYS_SECCOMP, unix.SECCOMP_SET_MODE_FILTER,
		unix.SECCOMP_FILTER_FLAG_NEW_LISTENER, uintptr(unsafe.Pointer(&prog)))
	if errno != 0 {
		return -1, fmt.Errorf("installing seccomp filter: %w", errno)
	}
	return int(fd), nil
}

// Notif is struct seccomp_notif.
type Notif struct {
	ID    uint64
	Pid   uint32
	Flags uint32
	Nr    int32
	Arch  uint32
	IP    uint64
	Args  [6]uint64
}

type notifResp struct {
	ID    uint64
	Val   int64
	Error int32
	Flags uint32
}

// Receive blocks until a filtered call arrives on the listener.
func Receive(listener int) (Notif, error) {
	var n Notif
	_, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(listener),
		unix.SECCOMP_IOCTL_NOTIF_RECV, uintptr(unsafe.Pointer(&n)))
	if errno != 0 {
		return n, errno
	}
	return n, nil
}

// Deny replies to a received call with the given errno.
func Deny(listener int, id uint64, errno unix.Errno) error {
	resp := notifResp{ID: id, Error: -int32(errno)}
	_, _, e := unix.Syscall(unix.SYS_IOCTL, uintptr(listener),
		unix.SECCOMP_IOCTL_NOTIF_SEND, uintptr(unsafe.Pointer(&resp)))
	if e != 0 {
		return e
	}
	return nil
}
