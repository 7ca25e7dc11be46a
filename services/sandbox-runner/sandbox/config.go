package sandbox

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// Config configures the sandbox-runner. The zero value of each field means
// its default; flags have NODEX_SANDBOX_<FLAG> environment twins.
type Config struct {
	// InitPath is the sandbox-init binary; default: sandbox-init beside the
	// running executable.
	InitPath string
	// Slots is how many sandboxes run at once; default 2.
	Slots int
	// Queue is how many more runs may wait for a slot before requests get
	// sandbox_busy; default 4 times Slots.
	Queue int
	// CodesecID is the identity whose bundle signatures are trusted; default
	// "codesec".
	CodesecID string
	// MaxWallTime, MaxCPUTime, MaxMemoryBytes, MaxPids and MaxOutputBytes
	// bound what a bundle may request; each is also the default.
	MaxWallTime    time.Duration
	MaxCPUTime     time.Duration
	MaxMemoryBytes int64
	MaxPids        int64
	MaxOutputBytes int64
	// HostIDBase is the first host uid and gid given to sandbox slots.
	HostIDBase int
	// Insecure runs code without any sandbox: development only, and every
	// run is logged as insecure.
	Insecure bool
	// Replicas is the replica count of the job and result streams and the
	// receipt bucket when the runner creates them; default 1. A stream
	// that already has more replicas keeps them, so a restart never
	// lowers replication.
	Replicas int
}

// RegisterFlags adds the config's flags to fs.
func (c *Config) RegisterFlags(fs *flag.FlagSet) {
	fs.StringVar(&c.InitPath, "init", "", "path of the sandbox-init binary (default: beside this executable)")
	fs.IntVar(&c.Slots, "slots", 0, "sandboxes that run at once (default 2)")
	fs.IntVar(&c.Queue, "queue", 0, "runs that may wait for a slot (default 4 per slot)")
	fs.StringVar(&c.CodesecID, "codesec-id", "", "identity id whose bundle signatures are trusted (default codesec)")
	fs.DurationVar(&c.MaxWallTime, "max-wall-time", 0, "maximum wall time of a run (default 10s)")
	fs.DurationVar(&c.MaxCPUTime, "max-cpu-time", 0, "maximum CPU time of a run (default 5s)")
	fs.Int64Var(&c.MaxMemoryBytes, "max-memory-bytes", 0, "maximum memory of a run in bytes (default 256 MiB)")
	fs.Int64Var(&c.MaxPids, "max-pids", 0, "maximum processes and threads of a run (default 64)")
	fs.Int64Var(&c.MaxOutputBytes, "max-output-bytes", 0, "maximum stdout and stderr bytes each (default 1 MiB)")
	fs.IntVar(&c.HostIDBase, "host-id-base", 0, "first host uid/gid of the sandbox slots (default 1048576)")
	fs.BoolVar(&c.Insecure, "insecure-no-sandbox", false, "run code WITHOUT isolation (development only)")
	fs.IntVar(&c.Replicas, "replicas", 0, "replicas of the job and result streams and the receipt bucket, 1 to 5 (default 1)")
}

// WithDefaults returns c with every zero field set to its default.
func (c Config) WithDefaults() Config {
	if c.InitPath == "" {
		if exe, err := os.Executable(); err == nil {
			c.InitPath = filepath.Join(filepath.Dir(exe), "sandbox-init")
		}
	}
	if c.Slots <= 0 {
		c.Slots = 2
	}
	if c.Queue <= 0 {
		c.Queue = 4 * c.Slots
	}
	if c.CodesecID == "" {
		c.CodesecID = "codesec"
	}
	if c.MaxWallTime <= 0 {
		c.MaxWallTime = 10 * time.Second
	}
	if c.MaxCPUTime <= 0 {
		c.MaxCPUTime = 5 * time.Second
	}
	if c.MaxMemoryBytes <= 0 {
		c.MaxMemoryBytes = 256 << 20
	}
	if c.MaxPids <= 0 {
		c.MaxPids = 64
	}
	if c.MaxOutputBytes <= 0 {
		c.MaxOutputBytes = 1 << 20
	}
	return c
}

// runnerReserveBytes is memory kept for the runner itself when checking that
// every slot's memory limit fits the machine.
const runnerReserveBytes = 512 << 20

// Validate checks the replica count, and that slots times the memory limit,
// plus the runner, fit in the machine's memory: otherwise the kernel's OOM
// killer may pick the runner.
func (c Config) Validate() error {
	if c.Replicas < 0 || c.Replicas > 5 {
		return fmt.Errorf("invalid replicas %d: use 1 to 5", c.Replicas)
	}
	total, err := memTotal()
	if err != nil {
		return err
	}
	need := int64(c.Slots)*c.MaxMemoryBytes + runnerReserveBytes
	if need > total {
		return fmt.Errorf("invalid limits: %d slots of %d bytes plus %d for the runner need %d bytes, "+
			"the machine has %d; lower -slots or -max-memory-bytes", c.Slots, c.MaxMemoryBytes,
			runnerReserveBytes, need, total)
	}
	return nil
}

func memTotal() (int64, error) {
	b, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return 0, fmt.Errorf("reading /proc/meminfo: %w", err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "MemTotal:"); ok {
			kib, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			if err != nil {
				return 0, fmt.Errorf("parsing MemTotal %q: %w", v, err)
			}
			return kib << 10, nil
		}
	}
	return 0, errors.New("no MemTotal in /proc/meminfo")
}
