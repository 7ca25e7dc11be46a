//go:build !amd64

package seccomp

// The system call tables exist for amd64 only, and a filter built from the
// wrong table would allow the wrong calls. This reference makes a build for
// another architecture fail until its table is written.
var _ = seccompTableMissingForThisArchitecture
