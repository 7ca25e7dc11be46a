package keyvault

import (
	"fmt"

	"golang.org/x/sys/unix"
)

// hardenProcess makes the process non-dumpable, which also keeps other
// processes of the same user from attaching with ptrace or reading
// /proc/<pid>/mem, and disables core dumps, so key values in memory do not
// reach a core file. Under `nodex dev` this applies to the whole process.
func hardenProcess() error {
	if err := unix.Prctl(unix.PR_SET_DUMPABLE, 0, 0, 0, 0); err != nil {
		return fmt.Errorf("making the process non-dumpable: %w", err)
	}
	if err := unix.Setrlimit(unix.RLIMIT_CORE, &unix.Rlimit{Cur: 0, Max: 0}); err != nil {
		return fmt.Errorf("disabling core dumps: %w", err)
	}

	return nil
}

// dumpable reports the process's PR_GET_DUMPABLE flag, for tests.
func dumpable() (bool, error) {
	v, err := unix.PrctlRetInt(unix.PR_GET_DUMPABLE, 0, 0, 0, 0)

	return v != 0, err
}
