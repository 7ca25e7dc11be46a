//go:build deploy && linux && arm64

package deploy

// sysSetns is setns(2) on linux/arm64; package syscall has no name for it.
const sysSetns = 268
