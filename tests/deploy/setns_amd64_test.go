//go:build deploy && linux && amd64

package deploy

// sysSetns is setns(2) on linux/amd64; package syscall has no name for it.
const sysSetns = 308
