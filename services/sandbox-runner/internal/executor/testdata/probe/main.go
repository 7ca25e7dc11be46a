// Command probe is a static program that the sandbox tests run inside the
// sandbox. "identity" prints what the process can see about itself as JSON;
// every other case tries one system call and prints "ok" or the errno name.
package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Println("usage: probe CASE")
		os.Exit(2)
	}
	if os.Args[1] == "identity" {
		identity()
		return
	}
	try, ok := cases[os.Args[1]]
	if !ok {
		fmt.Println("unknown case", os.Args[1])
		os.Exit(2)
	}
	fmt.Println(result(try()))
}

func result(err error) string {
	var errno syscall.Errno
	switch {
	case err == nil:
		return "ok"
	case errors.As(err, &errno):
		return unix.ErrnoName(errno)
	default:
		return err.Error()
	}
}

func errnoOf(_, _ uintptr, e syscall.Errno) error {
	if e != 0 {
		return e
	}
	return nil
}

// socketCase creates one socket of the family, with the type that family
// supports, so the filter sees exactly one call.
func socketCase(family, typ int) func() error {
	return func() error {
		fd, err := unix.Socket(family, typ, 0)
		if err == nil {
			unix.Close(fd)
		}
		return err
	}
}

var cases = map[string]func() error{
	"i386":      int80Case,
	"x32":       func() error { return errnoOf(unix.RawSyscall(0x40000000|unix.SYS_GETPID, 0, 0, 0)) },
	"clone_ns":  cloneNewUser,
	"clone3":    func() error { return errnoOf(unix.RawSyscall(unix.SYS_CLONE3, 0, 0, 0)) },
	"unshare":   func() error { return unix.Unshare(unix.CLONE_NEWUSER) },
	"setns":     func() error { return errnoOf(unix.RawSyscall(unix.SYS_SETNS, 0, 0, 0)) },
	"inet":      socketCase(unix.AF_INET, unix.SOCK_STREAM),
	"inet6":     socketCase(unix.AF_INET6, unix.SOCK_STREAM),
	"vsock":     socketCase(unix.AF_VSOCK, unix.SOCK_STREAM),
	"netlink":   socketCase(unix.AF_NETLINK, unix.SOCK_RAW),
	"packet":    socketCase(unix.AF_PACKET, unix.SOCK_RAW),
	"alg":       socketCase(unix.AF_ALG, unix.SOCK_SEQPACKET),
	"unix_pair": func() error { _, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM, 0); return err },
	"tiocsti": func() error {
		c := byte('x')
		return errnoOf(unix.Syscall(unix.SYS_IOCTL, 1, unix.TIOCSTI, uintptr(unsafe.Pointer(&c))))
	},
	"io_uring": func() error {
		var params [120]byte
		return errnoOf(unix.RawSyscall(unix.SYS_IO_URING_SETUP, 4, uintptr(unsafe.Pointer(&params)), 0))
	},
	"userfaultfd": func() error { return errnoOf(unix.RawSyscall(unix.SYS_USERFAULTFD, 0, 0, 0)) },
	"bpf":         func() error { return errnoOf(unix.RawSyscall(unix.SYS_BPF, 0, 0, 0)) },
	"keyctl": func() error {
		_, err := unix.KeyctlJoinSessionKeyring("nodex")
		return err
	},
	"personality": func() error { return errnoOf(unix.RawSyscall(unix.SYS_PERSONALITY, 0x0008, 0, 0)) },
	"personality_query": func() error {
		_, _, e := unix.RawSyscall(unix.SYS_PERSONALITY, 0xffffffff, 0, 0)
		return errnoOf(0, 0, e)
	},
	"ptrace":   func() error { return errnoOf(unix.RawSyscall(unix.SYS_PTRACE, unix.PTRACE_TRACEME, 0, 0)) },
	"fsopen":   func() error { _, err := unix.Fsopen("tmpfs", 0); return err },
	"mount":    func() error { return unix.Mount("none", "/tmp", "tmpfs", 0, "") },
	"kexec":    func() error { return errnoOf(unix.RawSyscall(unix.SYS_KEXEC_LOAD, 0, 0, 0)) },
	"exec_tmp": execFromTmp,
	"write_proc_sys": func() error {
		return os.WriteFile("/proc/sys/kernel/hostname", []byte("x"), 0)
	},
}

// cloneNewUser calls clone with CLONE_NEWUSER; a child that the kernel creates
// anyway exits at once.
func cloneNewUser() error {
	pid, _, e := unix.RawSyscall6(unix.SYS_CLONE, unix.CLONE_NEWUSER|uintptr(unix.SIGCHLD), 0, 0, 0, 0, 0)
	if e != 0 {
		return e
	}
	if pid == 0 {
		unix.RawSyscall(unix.SYS_EXIT_GROUP, 0, 0, 0)
	}
	var ws unix.WaitStatus
	_, _ = unix.Wait4(int(pid), &ws, 0, nil)
	return nil
}

// execFromTmp copies the probe to /tmp and runs the copy.
func execFromTmp() error {
	b, err := os.ReadFile("/proc/self/exe")
	if err != nil {
		return err
	}
	if err := os.WriteFile("/tmp/probe", b, 0o755); err != nil {
		return err
	}
	return exec.Command("/tmp/probe", "unix_pair").Run()
}

// Identity is what the identity case reports.
type Identity struct {
	UID, GID, EUID, EGID int
	Groups               []int
	Status               map[string]string
	UIDMap, GIDMap       string
	MountInfo            []string
	Environ              []string
	PID1Exe              string
	PID1Environ          string
	Hostname             string
	MaxUserNamespaces    string
	FDs                  []string
	ShadowReadable       bool
}

func identity() {
	id := Identity{UID: os.Getuid(), GID: os.Getgid(), EUID: os.Geteuid(), EGID: os.Getegid(),
		Status: map[string]string{}, FDs: openDescriptors()}
	id.Groups, _ = os.Getgroups()
	if b, err := os.ReadFile("/proc/self/status"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			k, v, ok := strings.Cut(line, ":")
			if ok {
				id.Status[k] = strings.TrimSpace(v)
			}
		}
	}
	id.UIDMap = readText("/proc/self/uid_map")
	id.GIDMap = readText("/proc/self/gid_map")
	id.MountInfo = strings.Split(strings.TrimSpace(readText("/proc/self/mountinfo")), "\n")
	id.Environ = os.Environ()
	if _, err := os.Readlink("/proc/1/exe"); err != nil {
		id.PID1Exe = result(err)
	} else {
		id.PID1Exe = "readable"
	}
	if _, err := os.ReadFile("/proc/1/environ"); err != nil {
		id.PID1Environ = result(err)
	} else {
		id.PID1Environ = "readable"
	}
	id.Hostname, _ = os.Hostname()
	id.MaxUserNamespaces = strings.TrimSpace(readText("/proc/sys/user/max_user_namespaces"))

	_, err := os.ReadFile("/etc/shadow")
	id.ShadowReadable = err == nil
	_ = json.NewEncoder(os.Stdout).Encode(id)
}

// openDescriptors lists the open descriptors with raw system calls, before
// the Go runtime opens its own poller descriptors. The list includes the one
// it reads /proc/self/fd through.
func openDescriptors() []string {
	dir, err := unix.Open("/proc/self/fd", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return []string{"error=" + err.Error()}
	}
	defer unix.Close(dir)
	buf := make([]byte, 4096)
	n, err := unix.ReadDirent(dir, buf)
	if err != nil {
		return []string{"error=" + err.Error()}
	}
	_, _, names := unix.ParseDirent(buf[:n], -1, nil)
	var out []string
	for _, name := range names {
		target := make([]byte, 256)
		m, _ := unix.Readlink("/proc/self/fd/"+name, target)
		out = append(out, name+"="+string(target[:max(m, 0)]))
	}
	return out
}

func readText(p string) string {
	b, err := os.ReadFile(p)
	if err != nil {
		return "error: " + err.Error()
	}
	return string(b)
}
