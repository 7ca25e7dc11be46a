#include "textflag.h"

// func vforkClone(flags uintptr) (ret uintptr)
//
// clone(flags, 0, 0, 0, 0), returning the kernel's raw result. With CLONE_VM
// and CLONE_VFORK the child runs on this stack before the parent resumes, and
// its later calls overwrite the stack slot of this function's return address.
// So the address waits in R12 (saved per thread by the kernel) during the
// system call and goes back on the stack after it.
TEXT ·vforkClone(SB),NOSPLIT|NOFRAME,$0-16
	MOVQ	flags+0(FP), DI
	XORQ	SI, SI
	XORQ	DX, DX
	XORQ	R10, R10
	XORQ	R8, R8
	MOVQ	$56, AX // SYS_CLONE
	POPQ	R12
	SYSCALL
	PUSHQ	R12
	MOVQ	AX, ret+8(FP)
	RET
