package executor

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/nodexsec/nodex/services/sandbox-runner/internal/proto"
)

// leaveTraces is run A: it leaves files, an abstract socket, System V shared
// memory, a POSIX message queue and (if it can) a keyring key, kills every
// process it can reach, and waits while run B looks.
const leaveTraces = `
import ctypes, os, signal, socket, time
for p in ("/work/a", "/tmp/a", "/dev/shm/a"):
    open(p, "w").write("a")
s = socket.socket(socket.AF_UNIX)
s.bind("\0nodex-across")
s.listen()
libc = ctypes.CDLL(None, use_errno=True)
print("shm", libc.shmget(0x4e4f4445, 4096, 0o1000 | 0o666))
print("mq", libc.mq_open(b"/nodex-across", os.O_CREAT | os.O_RDWR, 0o600, None), ctypes.get_errno())
print("key", libc.syscall(248, b"user", b"nodex-across", b"x", 1, -3))
try:
    os.kill(-1, signal.SIGKILL)
except ProcessLookupError:
    pass
print("ready", flush=True)
time.sleep(3)
`

// lookForTraces is run B: it prints which of A's traces it can see and whether
// it can write /proc/sys, read /etc/shadow, or see a variable outside the
// fixed environment.
const lookForTraces = `
import ctypes, json, os, socket
seen = {}
for p in ("/work/a", "/tmp/a", "/dev/shm/a"):
    seen[p] = os.path.exists(p)
try:
    socket.socket(socket.AF_UNIX).connect("\0nodex-across")
    seen["abstract socket"] = True
except OSError:
    seen["abstract socket"] = False
libc = ctypes.CDLL(None, use_errno=True)
seen["sysv shm"] = libc.shmget(0x4e4f4445, 0, 0) != -1
seen["posix mq"] = libc.mq_open(b"/nodex-across", os.O_RDWR) != -1
try:
    open("/proc/sys/kernel/hostname", "w").write("x")
    seen["proc sys writable"] = True
except OSError:
    seen["proc sys writable"] = False
try:
    open("/etc/shadow").read()
    seen["shadow readable"] = True
except OSError:
    seen["shadow readable"] = False
fixed = {"PATH", "HOME", "TMPDIR", "LANG", "USER", "PYTHONDONTWRITEBYTECODE", "MALLOC_ARENA_MAX"}
seen["host variables"] = any(k not in fixed for k in os.environ)
print(json.dumps(seen))
`

func pythonSpec(script string) Spec {
	return Spec{Runtime: RuntimePython, Entrypoint: "main.py",
		Files: []proto.File{{Path: "main.py", Data: []byte(script)}}}
}

func TestRunsSeeNothingOfEachOther(t *testing.T) {
	e := newTestExecutor(t, 2)
	done := make(chan Result, 1)
	go func() {
		res, _ := e.Run(context.Background(), pythonSpec(leaveTraces))
		done <- res
	}()
	time.Sleep(time.Second) // A has set up its traces and sleeps
	b := runSpec(t, e, pythonSpec(lookForTraces))
	a := <-done

	// Landlock denies creating a POSIX message queue (EACCES, 13), because the
	// mqueue file system is outside every rule; without Landlock A creates one.
	if !strings.Contains(string(a.Stdout), "mq 3") && !strings.Contains(string(a.Stdout), "mq -1 13") {
		t.Errorf("run A stdout %q: message queue neither created nor denied by Landlock", a.Stdout)
	}
	for _, want := range []string{"ready", "shm 0"} {
		if !strings.Contains(string(a.Stdout), want) {
			t.Errorf("run A stdout %q lacks %q; stderr %q", a.Stdout, want, a.Stderr)
		}
	}
	if !strings.Contains(string(a.Stdout), "key -1") {
		t.Errorf("run A added a keyring key: %q", a.Stdout)
	}
	var seen map[string]bool
	if err := json.Unmarshal(b.Stdout, &seen); err != nil {
		t.Fatalf("decoding run B output %q (stderr %q): %v", b.Stdout, b.Stderr, err)
	}
	if len(seen) != 9 {
		t.Errorf("run B reported %d checks, want 9: %v", len(seen), seen)
	}
	for what, visible := range seen {
		if visible {
			t.Errorf("run B: %s", what)
		}
	}
}
