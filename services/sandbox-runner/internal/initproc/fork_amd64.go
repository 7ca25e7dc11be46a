package initproc

// vforkClone calls clone(flags) so that a child on the same stack cannot
// break the parent's return (see fork_amd64.s), and returns the raw result.
func vforkClone(flags uintptr) (ret uintptr)
