package initproc

import (
	"encoding/json"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/nodexsec/nodex/services/sandbox-runner/internal/proto"
	"github.com/nodexsec/nodex/services/sandbox-runner/internal/seccomp"
)

// stage2Reply is what the second stage sends back before it execs.
type stage2Reply struct {
	Landlock int    `json:"landlock"`
	Error    string `json:"error,omitempty"`
}

// startStage2 forks the second stage from /proc/self/exe, hands it the config
// and receives the seccomp listener. It returns the program's PID.
func startStage2(cfg *proto.Config) (pid, listener, abi int, err error) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return 0, -1, 0, fmt.Errorf("creating stage 2 socket: %w", err)
	}
	parent := os.NewFile(uintptr(fds[0]), "stage2-parent")
	child := os.NewFile(uintptr(fds[1]), "stage2-child")
	defer parent.Close()

	stdin, err := openStdin(cfg.Stdin)
	if err != nil {
		child.Close()
		return 0, -1, 0, err
	}
	attr := &os.ProcAttr{
		Files: []*os.File{stdin, os.Stdout, os.Stderr, child},
		Sys:   &syscall.SysProcAttr{Setsid: true},
	}
	p, err := os.StartProcess("/proc/self/exe", []string{"sandbox-init", proto.Stage2Arg}, attr)
	stdin.Close()
	child.Close()
	if err != nil {
		return 0, -1, 0, fmt.Errorf("starting stage 2: %w", err)
	}
	pid = p.Pid
	_ = p.Release()

	// The files are already in /work; the second stage needs only the program.
	small := *cfg
	small.Files, small.EtcFiles, small.Stdin = nil, nil, nil
	msg, err := json.Marshal(&small)
	if err != nil {
		return pid, -1, 0, fmt.Errorf("encoding stage 2 config: %w", err)
	}
	if _, err := parent.Write(msg); err != nil {
		return pid, -1, 0, fmt.Errorf("sending stage 2 config: %w", err)
	}
	return receiveReply(fds[0], pid)
}

// openStdin returns /dev/null, or a sealed memfd holding data, so the program
// reads its input without it touching any file system.
func openStdin(data []byte) (*os.File, error) {
	if len(data) == 0 {
		f, err := os.Open("/dev/null")
		if err != nil {
			return nil, fmt.Errorf("opening /dev/null: %w", err)
		}
		return f, nil
	}
	fd, err := unix.MemfdCreate("stdin", unix.MFD_CLOEXEC|unix.MFD_ALLOW_SEALING)
	if err != nil {
		return nil, fmt.Errorf("creating stdin memfd: %w", err)
	}
	f := os.NewFile(uintptr(fd), "stdin")
	if _, err := f.Write(data); err != nil {
		f.Close()
		return nil, fmt.Errorf("writing stdin: %w", err)
	}
	seals := unix.F_SEAL_SEAL | unix.F_SEAL_SHRINK | unix.F_SEAL_GROW | unix.F_SEAL_WRITE
	if _, err := unix.FcntlInt(uintptr(fd), unix.F_ADD_SEALS, seals); err != nil {
		f.Close()
		return nil, fmt.Errorf("sealing stdin: %w", err)
	}
	if _, err := f.Seek(0, 0); err != nil {
		f.Close()
		return nil, fmt.Errorf("rewinding stdin: %w", err)
	}
	return f, nil
}

func receiveReply(sock, pid int) (int, int, int, error) {
	buf := make([]byte, 4096)
	oob := make([]byte, unix.CmsgSpace(4))
	n, oobn, _, _, err := unix.Recvmsg(sock, buf, oob, unix.MSG_CMSG_CLOEXEC)
	if err != nil || n == 0 {
		return pid, -1, 0, fmt.Errorf("receiving stage 2 reply: %v", err)
	}
	var reply stage2Reply
	if err := json.Unmarshal(buf[:n], &reply); err != nil {
		return pid, -1, 0, fmt.Errorf("decoding stage 2 reply: %w", err)
	}
	if reply.Error != "" {
		return pid, -1, 0, fmt.Errorf("stage 2: %s", reply.Error)
	}
	listener := -1
	if oobn > 0 {
		msgs, err := unix.ParseSocketControlMessage(oob[:oobn])
		if err == nil && len(msgs) == 1 {
			if fds, err := unix.ParseUnixRights(&msgs[0]); err == nil && len(fds) == 1 {
				listener = fds[0]
			}
		}
	}
	return pid, listener, reply.Landlock, nil
}

// stage2 runs in the forked child: it drops to the program's user, applies the
// layers that act on one thread, and execs. Every step runs on one locked
// thread because credentials, no_new_privs, Landlock and seccomp are per thread
// and execve keeps only the calling thread.
func stage2() int {
	runtime.LockOSThread()
	sock := 3
	buf := make([]byte, 1<<20)
	n, err := unix.Read(sock, buf)
	if err != nil {
		return 126
	}
	var cfg proto.Config
	if err := json.Unmarshal(buf[:n], &cfg); err != nil {
		return replyError(sock, fmt.Errorf("decoding config: %w", err))
	}
	listener, abi, err := applyLayers(&cfg)
	if err != nil {
		return replyError(sock, err)
	}
	msg, _ := json.Marshal(stage2Reply{Landlock: abi})
	var oob []byte
	if listener >= 0 {
		oob = unix.UnixRights(listener)
	}
	if err := unix.Sendmsg(sock, msg, oob, nil, 0); err != nil {
		return 126
	}
	if listener >= 0 {
		unix.Close(listener)
	}
	unix.Close(sock)
	if err := unix.Chdir(cfg.Dir); err != nil {
		fmt.Fprintf(os.Stderr, "sandbox: entering %s: %v\n", cfg.Dir, err)
		return 126
	}
	errno := execWithLimits(&cfg)
	fmt.Fprintf(os.Stderr, "sandbox: executing %s: %v\n", cfg.Argv[0], errno)
	return 127
}

// execWithLimits sets the rlimits and execs with a raw system call. The
// rlimits come last, with every exec argument converted beforehand, because
// the Go runtime's own address space (over 1 GiB reserved) would exceed an
// address-space limit on its next heap growth.
func execWithLimits(cfg *proto.Config) unix.Errno {
	path, err := unix.BytePtrFromString(cfg.Argv[0])
	if err != nil {
		return unix.EINVAL
	}
	argv, err := syscall.SlicePtrFromStrings(cfg.Argv)
	if err != nil {
		return unix.EINVAL
	}
	env, err := syscall.SlicePtrFromStrings(cfg.Env)
	if err != nil {
		return unix.EINVAL
	}
	limits := make([]unix.Rlimit, len(cfg.Rlimits))
	for i, rl := range cfg.Rlimits {
		limits[i] = unix.Rlimit{Cur: rl.Cur, Max: rl.Max}
	}
	if !cfg.Layers.NoRlimits {
		for i, rl := range cfg.Rlimits {
			_, _, e := unix.RawSyscall6(unix.SYS_PRLIMIT64, 0, uintptr(rl.Resource),
				uintptr(unsafe.Pointer(&limits[i])), 0, 0, 0)
			if e != 0 {
				return e
			}
		}
	}
	_, _, e := unix.RawSyscall(unix.SYS_EXECVE, uintptr(unsafe.Pointer(path)),
		uintptr(unsafe.Pointer(&argv[0])), uintptr(unsafe.Pointer(&env[0])))
	return e
}

func replyError(sock int, err error) int {
	msg, _ := json.Marshal(stage2Reply{Error: err.Error()})
	_ = unix.Sendmsg(sock, msg, nil, nil, 0)
	return 126
}

func applyLayers(cfg *proto.Config) (listener, abi int, err error) {
	if len(cfg.Argv) == 0 {
		return -1, 0, fmt.Errorf("empty argv")
	}
	if !cfg.Layers.NoCredDrop {
		if err := dropCredentials(cfg.UID, cfg.GID); err != nil {
			return -1, 0, err
		}
	}
	if err := unix.CloseRange(4, ^uint(0), unix.CLOSE_RANGE_CLOEXEC); err != nil {
		return -1, 0, fmt.Errorf("marking descriptors close-on-exec: %w", err)
	}
	if !cfg.Layers.NoNewPrivsOff {
		if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
			return -1, 0, fmt.Errorf("setting no_new_privs: %w", err)
		}
	}
	if !cfg.Layers.NoLandlock {
		if abi, err = applyLandlock(); err != nil {
			return -1, 0, err
		}
	}
	listener = -1
	if !cfg.Layers.NoSeccomp {
		if listener, err = seccomp.Install(seccomp.Build()); err != nil {
			return -1, 0, err
		}
	}
	return listener, abi, nil
}

// dropCredentials empties the bounding, ambient, inheritable, permitted and
// effective capability sets and switches to uid and gid with no supplementary
// groups. The calls act on the calling thread only.
func dropCredentials(uid, gid int) error {
	last := lastCap()
	for c := 0; c <= last; c++ {
		if err := unix.Prctl(unix.PR_CAPBSET_DROP, uintptr(c), 0, 0, 0); err != nil {
			return fmt.Errorf("dropping capability %d from the bounding set: %w", c, err)
		}
	}
	if err := unix.Prctl(unix.PR_CAP_AMBIENT, unix.PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0); err != nil {
		return fmt.Errorf("clearing ambient capabilities: %w", err)
	}
	if _, _, e := unix.RawSyscall(unix.SYS_SETGROUPS, 0, 0, 0); e != 0 {
		return fmt.Errorf("clearing supplementary groups: %w", e)
	}
	g := uintptr(gid)
	if _, _, e := unix.RawSyscall(unix.SYS_SETRESGID, g, g, g); e != 0 {
		return fmt.Errorf("setting gid %d: %w", gid, e)
	}
	u := uintptr(uid)
	if _, _, e := unix.RawSyscall(unix.SYS_SETRESUID, u, u, u); e != 0 {
		return fmt.Errorf("setting uid %d: %w", uid, e)
	}
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capset(&hdr, &data[0]); err != nil {
		return fmt.Errorf("clearing capabilities: %w", err)
	}
	return nil
}

func lastCap() int {
	b, err := os.ReadFile("/proc/sys/kernel/cap_last_cap")
	if err != nil {
		return 63
	}
	n, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		return 63
	}
	return n
}
