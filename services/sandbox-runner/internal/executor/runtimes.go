package executor

import (
	"fmt"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/nodexsec/nodex/services/sandbox-runner/internal/proto"
)

// programID is the uid and gid that programs run as inside the sandbox.
const programID = 1000

// runtimePaths are the system interpreters, under /usr so the read-only bind
// contains them. A per-user install or a version-manager shim is never used.
var runtimePaths = map[string]string{
	RuntimePython: "/usr/bin/python3",
	RuntimeNode:   "/usr/bin/node",
	RuntimeSh:     "/usr/bin/sh",
	RuntimeBash:   "/usr/bin/bash",
}

// baseEnv is the whole environment of a program, apart from per-runtime
// additions; nothing from the runner's environment is passed on.
var baseEnv = []string{
	"PATH=/usr/local/bin:/usr/bin:/bin",
	"HOME=/work",
	"TMPDIR=/tmp",
	"LANG=C.UTF-8",
	"USER=sandbox",
}

// mallocArenas caps glibc's per-thread malloc arenas, which reserve 64 MiB of
// address space each: under the address-space limit, a few threads would
// otherwise exhaust it long before the pids limit.
const mallocArenas = "MALLOC_ARENA_MAX=2"

// resolveRuntimes finds the interpreters once, at start. A missing one is left
// out and a run that names it is rejected.
func resolveRuntimes() (map[string]string, error) {
	out := map[string]string{}
	for name, p := range runtimePaths {
		real, err := filepath.EvalSymlinks(p)
		if err != nil || !strings.HasPrefix(real, "/usr/") {
			continue
		}
		out[name] = p
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%w: no interpreter found under /usr", ErrNoSandbox)
	}
	return out, nil
}

// pythonBootstrap runs the entrypoint as __main__ with /work first on sys.path.
// Python runs isolated (-I), which leaves the script's folder off the path.
const pythonBootstrap = `import sys, runpy
sys.argv = sys.argv[1:]
sys.path.insert(0, "/work")
%s
runpy.run_path(sys.argv[0], run_name="__main__")
`

// command returns the argv, environment and files of a run.
func (e *Executor) command(spec *Spec, lim Limits) ([]string, []string, []proto.File, error) {
	env := append([]string(nil), baseEnv...)
	files := spec.Files
	if len(spec.Argv) > 0 {
		if !path.IsAbs(spec.Argv[0]) {
			return nil, nil, nil, fmt.Errorf("invalid argv[0] %q: must be an absolute path", spec.Argv[0])
		}
		return spec.Argv, env, files, nil
	}
	bin, ok := e.runtimes[spec.Runtime]
	if !ok {
		return nil, nil, nil, fmt.Errorf("unknown runtime %q: use python, node, sh or bash", spec.Runtime)
	}
	entry := path.Clean("/work/" + spec.Entrypoint)
	if spec.Entrypoint == "" || !strings.HasPrefix(entry, "/work/") {
		return nil, nil, nil, fmt.Errorf("invalid entrypoint %q: must be a file inside /work", spec.Entrypoint)
	}
	var argv []string
	switch spec.Runtime {
	case RuntimePython:
		env = append(env, "PYTHONDONTWRITEBYTECODE=1", mallocArenas)
		boot := fmt.Sprintf(pythonBootstrap, pythonGuard(spec.Modules))
		argv = []string{bin, "-I", "-c", boot, entry}
	case RuntimeNode:
		// libuv's io_uring use would hit the seccomp filter on every start.
		env = append(env, "UV_USE_IO_URING=0")
		heapMiB := max(lim.MemoryBytes*3/4>>20, 16)
		argv = []string{bin, "--max-old-space-size=" + strconv.FormatInt(heapMiB, 10)}
		if spec.Modules != nil {
			files = append(files,
				proto.File{Path: nodeGuardFile, Data: []byte(nodeGuard(spec.Modules))},
				proto.File{Path: nodeRegisterFile, Data: []byte(nodeRegister())},
				proto.File{Path: nodeHooksFile, Data: []byte(nodeHooks(spec.Modules))})
			argv = append(argv, "--require", "/work/"+nodeGuardFile,
				"--import", "file:///work/"+nodeRegisterFile)
		}
		argv = append(argv, entry)
	default:
		env = append(env, mallocArenas)
		argv = []string{bin, entry}
	}
	return append(argv, spec.Args...), env, files, nil
}

// rlimits returns the per-process limits of a run. The address-space limit
// applies to the python and shell runtimes only. Node reserves large address
// ranges up front, so --max-old-space-size under the memory cgroup bounds its
// heap instead. A program run by Argv gets none, because a Go binary, for
// one, reserves over 1 GiB at start.
func rlimits(spec *Spec, lim Limits) []proto.Rlimit {
	fixed := func(res int, v uint64) proto.Rlimit { return proto.Rlimit{Resource: res, Cur: v, Max: v} }
	out := []proto.Rlimit{
		fixed(unix.RLIMIT_CORE, 0),
		fixed(unix.RLIMIT_FSIZE, uint64(lim.FileBytes)),
		fixed(unix.RLIMIT_NOFILE, lim.OpenFiles),
		fixed(unix.RLIMIT_MEMLOCK, 64<<10),
		fixed(unix.RLIMIT_MSGQUEUE, 800<<10), // the kernel default; raising it needs a capability,
		// Above the pids cgroup limit, which also counts the init's threads, so
		// the cgroup (whose refusals are counted) stops a bomb first. The rlimit
		// is the backstop where no pids controller exists.
		fixed(unix.RLIMIT_NPROC, uint64(lim.Pids+16)),
	}
	switch spec.Runtime {
	case RuntimePython, RuntimeSh, RuntimeBash:
		// Four times the memory limit: real allocations meet the cgroup first, so
		// a heap bomb ends as a memory kill rather than a MemoryError.
		out = append(out, fixed(unix.RLIMIT_AS, uint64(4*lim.MemoryBytes)))
	}
	return out
}

// initConfig returns the run's config for sandbox-init.
func initConfig(spec Spec, lim Limits, argv, env []string, files []proto.File) proto.Config {
	return proto.Config{
		Argv:      argv,
		Env:       env,
		Dir:       "/work",
		Files:     files,
		Stdin:     spec.Stdin,
		WorkBytes: lim.WorkBytes, WorkInodes: lim.WorkInodes,
		TmpBytes: lim.TmpBytes, TmpInodes: lim.WorkInodes,
		ShmBytes: min(lim.TmpBytes, 16<<20),
		Rlimits:  rlimits(&spec, lim),
	}
}

// prepareMessage returns the part of every run's setup that does not depend
// on the run, for an init that will serve runs with the given layers.
func (e *Executor) prepareMessage(layers proto.Layers) proto.Prepare {
	uid := programID
	if !e.rootful {
		uid = 0
	}
	return proto.Prepare{
		Hostname:   "sandbox",
		UID:        uid,
		GID:        uid,
		EtcFiles:   etcFiles(uid),
		EtcLinks:   e.etcLinks,
		Layers:     layers,
		TraceSteps: e.cfg.TraceSteps,
	}
}

func etcFiles(uid int) map[string]string {
	id := strconv.Itoa(uid)
	return map[string]string{
		"passwd":        "root:x:0:0:root:/:/usr/sbin/nologin\nsandbox:x:" + id + ":" + id + ":sandbox:/work:/bin/sh\n",
		"group":         "root:x:0:\nsandbox:x:" + id + ":\n",
		"hosts":         "127.0.0.1 localhost sandbox\n::1 localhost\n",
		"nsswitch.conf": "passwd: files\ngroup: files\nhosts: files\n",
	}
}

// alternativesLinks returns the Debian alternatives that name programs (such
// as awk to /usr/bin/mawk), so that the links under /usr/bin resolve inside
// the sandbox's synthetic /etc. Alternatives for manual pages and other data
// are left out.
func alternativesLinks() map[string]string {
	links := map[string]string{}
	entries, err := os.ReadDir("/etc/alternatives")
	if err != nil {
		return links
	}
	for _, e := range entries {
		target, err := os.Readlink(filepath.Join("/etc/alternatives", e.Name()))
		if err != nil || !strings.HasPrefix(target, "/usr/") {
			continue
		}
		if strings.Contains(target, "/bin/") || strings.Contains(target, "/sbin/") ||
			strings.HasPrefix(target, "/usr/lib/") {
			links["alternatives/"+e.Name()] = target
		}
	}
	return links
}
