package seccomp

import (
	"fmt"
	"testing"

	"golang.org/x/sys/unix"
)

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

// linearReference returns the filter as Build returned it before the binary
// search: every list checked in turn. It is the reference the search must match.
func linearReference() []unix.SockFilter {
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

// run interprets the classic BPF subset that the filters use on one call and
// returns the filter's value and how many instructions ran.
func run(t *testing.T, insns []unix.SockFilter, arch, nr uint32, args [6]uint64) (uint32, int) {
	t.Helper()
	var acc uint32
	steps := 0
	for pc := 0; pc < len(insns); pc++ {
		steps++
		in := insns[pc]
		switch in.Code {
		case unix.BPF_LD | unix.BPF_W | unix.BPF_ABS:
			switch {
			case in.K == offNr:
				acc = nr
			case in.K == offArch:
				acc = arch
			case in.K >= offArgs && (in.K-offArgs)%8 == 0:
				acc = uint32(args[(in.K-offArgs)/8])
			default:
				t.Fatalf("load of offset %d at %d", in.K, pc)
			}
		case unix.BPF_JMP | unix.BPF_JA:
			pc += int(in.K)
		case unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K, unix.BPF_JMP | unix.BPF_JGE | unix.BPF_K,
			unix.BPF_JMP | unix.BPF_JSET | unix.BPF_K:
			var jump bool
			switch in.Code &^ (unix.BPF_JMP | unix.BPF_K) {
			case unix.BPF_JEQ:
				jump = acc == in.K
			case unix.BPF_JGE:
				jump = acc >= in.K
			case unix.BPF_JSET:
				jump = acc&in.K != 0
			}
			if jump {
				pc += int(in.Jt)
			} else {
				pc += int(in.Jf)
			}
		case unix.BPF_RET | unix.BPF_K:
			return in.K, steps
		default:
			t.Fatalf("unexpected instruction %#x at %d", in.Code, pc)
		}
	}
	t.Fatal("program ran off its end")
	return 0, steps
}

// TestBuildMatchesLinearFilter checks that the binary search returns what the
// linear filter returns for every call number and the argument values that
// the argument checks tell apart.
func TestBuildMatchesLinearFilter(t *testing.T) {
	got, want := Build(), linearReference()
	if len(got) > unix.BPF_MAXINSNS {
		t.Fatalf("got %d instructions, over the kernel's %d", len(got), unix.BPF_MAXINSNS)
	}
	argValues := []uint64{0, 1, unix.AF_UNIX, unix.AF_INET, unix.AF_VSOCK, unix.TIOCSTI,
		unix.TIOCLINUX, unix.TIOCSETD, unix.TCGETS, 0xffffffff, 8, unix.CLONE_NEWUSER,
		unix.CLONE_NEWNET | uint64(unix.SIGCHLD), uint64(unix.SIGCHLD), unix.CLONE_VM | unix.CLONE_VFORK}
	var nrs []uint32
	for nr := uint32(0); nr < 1024; nr++ {
		nrs = append(nrs, nr)
	}
	nrs = append(nrs, x32SyscallBit, x32SyscallBit+1, x32SyscallBit-1, 0xffffffff)
	for _, arch := range []uint32{nativeArch, unix.AUDIT_ARCH_I386} {
		for _, nr := range nrs {
			for _, a := range argValues {
				args := [6]uint64{a, a, a}
				g, _ := run(t, got, arch, nr, args)
				w, _ := run(t, want, arch, nr, args)
				if g != w {
					t.Fatalf("arch %#x call %d args %s: got %#x, want %#x", arch, nr,
						fmt.Sprint(args[:2]), g, w)
				}
			}
		}
	}
}

// TestBuildPathsAreShort checks that no call runs more than a few dozen
// instructions, where the linear filter ran hundreds.
func TestBuildPathsAreShort(t *testing.T) {
	const maxSteps = 40
	insns := Build()
	longest := 0
	for nr := uint32(0); nr < 1024; nr++ {
		_, steps := run(t, insns, nativeArch, nr, [6]uint64{})
		longest = max(longest, steps)
	}
	if longest > maxSteps {
		t.Errorf("got a longest path of %d instructions, want at most %d", longest, maxSteps)
	}
	_, linear := run(t, linearReference(), nativeArch, 1023, [6]uint64{})
	t.Logf("%d instructions, longest path %d; linear filter %d instructions, %d for call 1023",
		len(insns), longest, len(linearReference()), linear)
}
