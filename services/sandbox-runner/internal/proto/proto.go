// Package proto defines the messages that the runner and sandbox-init exchange
// over inherited descriptors. It has no dependencies so that sandbox-init stays
// small and starts fast.
package proto

// Descriptor numbers that sandbox-init inherits from the runner. Descriptors 0, 1
// and 2 are stdin (/dev/null), stdout and stderr.
const (
	// ConfigFD carries one JSON [Prepare], written by the runner only after it
	// has attached the init to its cgroups, so the init blocks until then, and
	// later one JSON [Config] for the run.
	ConfigFD = 3
	// StatusFD receives one JSON [Status] when the run ends.
	StatusFD = 4
	// LifelineFD is the read end of a pipe whose write end only the runner holds.
	// EOF means the runner died, and the init then kills the sandbox.
	LifelineFD = 5
)

// Prepare is the first message on [ConfigFD]: the part of the sandbox that
// does not depend on the run. The runner sends it as soon as it has attached
// the init to its cgroups, so the init builds the root, pivots and prepares
// its restrictions while it waits for a run.
type Prepare struct {
	Hostname string `json:"hostname"`

	// UID and GID are the ids inside the user namespace that the program runs as.
	UID int `json:"uid"`
	GID int `json:"gid"`

	// EtcFiles are the synthetic /etc, by file name (passwd, group, hosts).
	EtcFiles map[string]string `json:"etc_files"`
	// EtcLinks are symbolic links in /etc, by path relative to /etc (such as
	// alternatives/awk), to their targets.
	EtcLinks map[string]string `json:"etc_links,omitempty"`

	// Layers switches isolation layers off. Only tests set it, to prove that a
	// test fails without the layer it checks; the runner then starts an init
	// for that run alone.
	Layers Layers `json:"layers"`

	// TraceSteps requests [Status.Steps].
	TraceSteps bool `json:"trace_steps,omitempty"`
}

// Config is the second message on [ConfigFD]: one sandbox run.
type Config struct {
	// Argv, Env and Dir describe the program; Argv[0] is an absolute path inside
	// the sandbox.
	Argv []string `json:"argv"`
	Env  []string `json:"env"`
	Dir  string   `json:"dir"`

	// Files are written into /work once the run's limits are set, so their
	// pages are charged to the run under its memory limit.
	Files []File `json:"files,omitempty"`

	// Stdin is the program's standard input; empty means /dev/null.
	Stdin []byte `json:"stdin,omitempty"`

	WorkBytes  int64 `json:"work_bytes"`
	WorkInodes int64 `json:"work_inodes"`
	TmpBytes   int64 `json:"tmp_bytes"`
	TmpInodes  int64 `json:"tmp_inodes"`
	ShmBytes   int64 `json:"shm_bytes"`

	Rlimits []Rlimit `json:"rlimits"`
}

// File is one file of the program, relative to /work.
type File struct {
	Path string `json:"path"`
	Mode uint32 `json:"mode"`
	Data []byte `json:"data"`
}

// Rlimit is one resource limit for the program, as in setrlimit(2).
type Rlimit struct {
	Resource int    `json:"resource"`
	Cur      uint64 `json:"cur"`
	Max      uint64 `json:"max"`
}

// Layers lists the test-only switches; the zero value keeps every layer on.
type Layers struct {
	NoSeccomp     bool `json:"no_seccomp,omitempty"`
	NoLandlock    bool `json:"no_landlock,omitempty"`
	NoCredDrop    bool `json:"no_cred_drop,omitempty"`
	NoProcMasks   bool `json:"no_proc_masks,omitempty"`
	NoReadOnly    bool `json:"no_read_only,omitempty"`
	NoRlimits     bool `json:"no_rlimits,omitempty"`
	NoTreeKill    bool `json:"no_tree_kill,omitempty"`
	NoNewPrivsOff bool `json:"no_new_privs_off,omitempty"`
	// NoCgroupLimits leaves the run's memory and pids cgroups unlimited. The
	// runner reads it; sandbox-init ignores it.
	NoCgroupLimits bool `json:"no_cgroup_limits,omitempty"`
}

// Status is the outcome that sandbox-init reports when the run ends.
type Status struct {
	// Started is false when the setup failed before the program ran, and Error
	// then names the step that failed.
	Started bool   `json:"started"`
	Error   string `json:"error,omitempty"`

	ExitCode int `json:"exit_code"`
	// Signal is the number of the signal that ended the program, or 0.
	Signal int `json:"signal"`

	// UserTimeUs and SystemTimeUs are the CPU time of every reaped process.
	UserTimeUs   int64 `json:"user_time_us"`
	SystemTimeUs int64 `json:"system_time_us"`
	// MaxRSSKiB is the largest resident set of a single reaped process.
	MaxRSSKiB int64 `json:"max_rss_kib"`

	// Denials are the system calls that the seccomp filter passed to the init
	// through user notification. The init replied EPERM to each.
	Denials []Denial `json:"denials,omitempty"`

	// Landlock is the Landlock ABI version applied, 0 when unavailable.
	Landlock int `json:"landlock"`

	// Steps are the ends of the init's set-up steps, sent only when
	// [Prepare.TraceSteps] is set.
	Steps []Step `json:"steps,omitempty"`
}

// Step is the end of one named set-up step, in CLOCK_MONOTONIC nanoseconds,
// so that the runner's and the init's steps line up.
type Step struct {
	Name string `json:"name"`
	Ns   int64  `json:"ns"`
}

// Denial is one system call denied by the seccomp filter.
type Denial struct {
	Syscall string    `json:"syscall"`
	Nr      int32     `json:"nr"`
	Arch    uint32    `json:"arch"`
	Args    [6]uint64 `json:"args"`
}
