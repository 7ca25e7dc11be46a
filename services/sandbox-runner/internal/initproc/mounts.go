package initproc

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/nodexsec/nodex/services/sandbox-runner/internal/proto"
)

// newRoot is the mount point of the sandbox's tmpfs root before pivot_root.
// The mount is in the init's private mount namespace, so the host's /tmp is
// untouched.
const newRoot = "/tmp"

// usrLinks are the merged-usr top-level entries. Each is copied as the same
// symbolic link when the host has one, and bound read-only when it is a folder.
var usrLinks = []string{"bin", "lib", "lib32", "lib64", "libx32", "sbin"}

// procReadOnly are the /proc entries bound read-only over themselves.
var procReadOnly = []string{"sys", "sysrq-trigger", "irq", "bus", "fs"}

// procMasked are the /proc entries hidden under /dev/null.
var procMasked = []string{"kcore", "keys", "timer_list", "sched_debug"}

// devNodes are the device files bound from the host's /dev.
var devNodes = []string{"null", "zero", "random", "urandom"}

// userNamespaceLimits are set to 0 inside, so the sandbox cannot create more
// namespaces even if a seccomp gap let it call unshare.
var userNamespaceLimits = []string{
	"max_user_namespaces", "max_pid_namespaces", "max_net_namespaces",
	"max_mnt_namespaces", "max_ipc_namespaces", "max_uts_namespaces",
	"max_cgroup_namespaces", "max_time_namespaces",
}

func mountAt(src, dst, fstype string, flags uintptr, data string) error {
	if err := unix.Mount(src, dst, fstype, flags, data); err != nil {
		return fmt.Errorf("mounting %s on %s: %w", fstype+src, dst, err)
	}
	return nil
}

func setattr(path string, set uint64, recursive bool) error {
	flags := 0
	if recursive {
		flags = unix.AT_RECURSIVE
	}
	attr := unix.MountAttr{Attr_set: set}
	if err := unix.MountSetattr(unix.AT_FDCWD, path, uint(flags), &attr); err != nil {
		return fmt.Errorf("setting mount attributes on %s: %w", path, err)
	}
	return nil
}

func bindReadOnly(src, dst string) error {
	if err := mountAt(src, dst, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
		return err
	}
	return setattr(dst, unix.MOUNT_ATTR_RDONLY|unix.MOUNT_ATTR_NOSUID|unix.MOUNT_ATTR_NODEV, true)
}

// buildRoot builds the part of the sandbox's file system view that does not
// depend on the run and pivots into it. The run's own file systems come
// later, from mountRunFS.
func buildRoot(prep *proto.Prepare) error {
	ldCache, err := os.ReadFile("/etc/ld.so.cache")
	if err != nil {
		return fmt.Errorf("reading /etc/ld.so.cache: %w", err)
	}
	if err := mountAt("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		return err
	}
	if err := mountAt("tmpfs", newRoot, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV,
		"size=4m,nr_inodes=4096,mode=0755"); err != nil {
		return err
	}
	if err := mountUsr(); err != nil {
		return err
	}
	mark("usr_bound")
	for _, dir := range []string{"work", "tmp"} {
		if err := os.Mkdir(newRoot+"/"+dir, 0o755); err != nil {
			return fmt.Errorf("creating /%s: %w", dir, err)
		}
	}
	if err := mountDev(); err != nil {
		return err
	}
	mark("dev_built")
	if err := mountProc(prep); err != nil {
		return err
	}
	mark("proc_mounted")
	if err := writeEtc(prep, ldCache); err != nil {
		return err
	}
	mark("etc_written")
	if err := pivot(); err != nil {
		return err
	}
	mark("pivoted")
	return nil
}

func mountUsr() error {
	if err := os.Mkdir(newRoot+"/usr", 0o755); err != nil {
		return fmt.Errorf("creating /usr: %w", err)
	}
	if err := bindReadOnly("/usr", newRoot+"/usr"); err != nil {
		return err
	}
	for _, name := range usrLinks {
		fi, err := os.Lstat("/" + name)
		if err != nil {
			continue // absent on this host
		}
		dst := newRoot + "/" + name
		if fi.Mode()&os.ModeSymlink != 0 {
			target, err := os.Readlink("/" + name)
			if err != nil {
				return fmt.Errorf("reading link /%s: %w", name, err)
			}
			if err := os.Symlink(target, dst); err != nil {
				return fmt.Errorf("creating link /%s: %w", name, err)
			}
			continue
		}
		if err := os.Mkdir(dst, 0o755); err != nil {
			return fmt.Errorf("creating /%s: %w", name, err)
		}
		if err := bindReadOnly("/"+name, dst); err != nil {
			return err
		}
	}
	return nil
}

// mountRunFS mounts the run's size-limited tmpfs file systems on /work, /tmp
// and /dev/shm, after the pivot and under the read-only root, and writes the
// program's files into /work.
func mountRunFS(cfg *proto.Config, prep *proto.Prepare) error {
	flags := uintptr(unix.MS_NOSUID | unix.MS_NODEV)
	for _, m := range []struct {
		dir           string
		bytes, inodes int64
		mode          string
	}{
		{"/work", cfg.WorkBytes, cfg.WorkInodes, "0755"},
		{"/tmp", cfg.TmpBytes, cfg.TmpInodes, "1777"},
	} {
		data := fmt.Sprintf("size=%d,nr_inodes=%d,mode=%s,uid=%d,gid=%d",
			m.bytes, m.inodes, m.mode, prep.UID, prep.GID)
		if err := mountAt("tmpfs", m.dir, "tmpfs", flags, data); err != nil {
			return err
		}
	}
	data := fmt.Sprintf("size=%d,nr_inodes=1024,mode=1777", cfg.ShmBytes)
	if err := mountAt("tmpfs", "/dev/shm", "tmpfs", flags, data); err != nil {
		return err
	}
	return writeFiles(cfg, prep.UID, prep.GID)
}

// writeFiles writes the program's files into /work, owned by the program's user.
func writeFiles(cfg *proto.Config, uid, gid int) error {
	const work = "/work"
	for _, f := range cfg.Files {
		rel := filepath.Clean(f.Path)
		if filepath.IsAbs(rel) || rel == "." || strings.HasPrefix(rel, "..") {
			return fmt.Errorf("invalid file path %q: must be relative and inside /work", f.Path)
		}
		dst := filepath.Join(work, rel)
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			return fmt.Errorf("creating folder for %q: %w", f.Path, err)
		}
		mode := os.FileMode(f.Mode & 0o755)
		if mode == 0 {
			mode = 0o644
		}
		if err := os.WriteFile(dst, f.Data, mode); err != nil {
			return fmt.Errorf("writing %q: %w", f.Path, err)
		}
	}
	return chownTree(work, uid, gid)
}

func chownTree(root string, uid, gid int) error {
	return filepath.Walk(root, func(p string, _ os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		return os.Lchown(p, uid, gid)
	})
}

func mountDev() error {
	dev := newRoot + "/dev"
	if err := os.Mkdir(dev, 0o755); err != nil {
		return fmt.Errorf("creating /dev: %w", err)
	}
	if err := mountAt("tmpfs", dev, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC,
		"size=64k,nr_inodes=64,mode=0755"); err != nil {
		return err
	}
	for _, name := range devNodes {
		dst := dev + "/" + name
		if err := os.WriteFile(dst, nil, 0o666); err != nil {
			return fmt.Errorf("creating /dev/%s: %w", name, err)
		}
		// Device binds keep their dev permission (nodev would make them unusable);
		// they are the only such mounts.
		if err := mountAt("/dev/"+name, dst, "", unix.MS_BIND, ""); err != nil {
			return err
		}
		if err := setattr(dst, unix.MOUNT_ATTR_NOSUID|unix.MOUNT_ATTR_NOEXEC, false); err != nil {
			return err
		}
	}
	links := map[string]string{
		"fd": "/proc/self/fd", "stdin": "/proc/self/fd/0",
		"stdout": "/proc/self/fd/1", "stderr": "/proc/self/fd/2",
	}
	for name, target := range links {
		if err := os.Symlink(target, dev+"/"+name); err != nil {
			return fmt.Errorf("creating /dev/%s: %w", name, err)
		}
	}
	if err := os.Mkdir(dev+"/shm", 0o1777); err != nil {
		return fmt.Errorf("creating /dev/shm: %w", err)
	}
	return nil
}

func mountProc(prep *proto.Prepare) error {
	proc := newRoot + "/proc"
	if err := os.Mkdir(proc, 0o555); err != nil {
		return fmt.Errorf("creating /proc: %w", err)
	}
	flags := uintptr(unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC)
	if err := mountAt("proc", proc, "proc", flags, "hidepid=invisible"); err != nil {
		return err
	}
	if prep.Layers.NoProcMasks {
		return nil
	}
	for _, name := range userNamespaceLimits {
		p := proc + "/sys/user/" + name
		if err := os.WriteFile(p, []byte("0\n"), 0); err != nil && !os.IsNotExist(err) {
			return fmt.Errorf("writing %s: %w", p, err)
		}
	}
	for _, name := range procReadOnly {
		p := proc + "/" + name
		if _, err := os.Lstat(p); err != nil {
			continue
		}
		if err := mountAt(p, p, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
			return err
		}
		set := uint64(unix.MOUNT_ATTR_RDONLY | unix.MOUNT_ATTR_NOSUID | unix.MOUNT_ATTR_NODEV |
			unix.MOUNT_ATTR_NOEXEC)
		if err := setattr(p, set, true); err != nil {
			return err
		}
	}
	for _, name := range procMasked {
		p := proc + "/" + name
		if _, err := os.Lstat(p); err != nil {
			continue
		}
		if err := mountAt(newRoot+"/dev/null", p, "", unix.MS_BIND, ""); err != nil {
			return err
		}
		// With nodev the mask cannot even be opened.
		set := uint64(unix.MOUNT_ATTR_RDONLY | unix.MOUNT_ATTR_NOSUID | unix.MOUNT_ATTR_NODEV |
			unix.MOUNT_ATTR_NOEXEC)
		if err := setattr(p, set, false); err != nil {
			return err
		}
	}
	return nil
}

func writeEtc(prep *proto.Prepare, ldCache []byte) error {
	etc := newRoot + "/etc"
	if err := os.Mkdir(etc, 0o755); err != nil {
		return fmt.Errorf("creating /etc: %w", err)
	}
	for name, body := range prep.EtcFiles {
		if strings.Contains(name, "/") {
			return fmt.Errorf("invalid /etc file name %q: must not contain a slash", name)
		}
		if err := os.WriteFile(etc+"/"+name, []byte(body), 0o644); err != nil {
			return fmt.Errorf("writing /etc/%s: %w", name, err)
		}
	}
	if err := os.WriteFile(etc+"/ld.so.cache", ldCache, 0o644); err != nil {
		return fmt.Errorf("writing /etc/ld.so.cache: %w", err)
	}
	// Most links share one folder (alternatives), so each folder is created once.
	created := map[string]bool{etc: true}
	for rel, target := range prep.EtcLinks {
		clean := filepath.Clean(rel)
		if filepath.IsAbs(clean) || strings.HasPrefix(clean, "..") {
			return fmt.Errorf("invalid /etc link %q: must be relative and inside /etc", rel)
		}
		dst := filepath.Join(etc, clean)
		if dir := filepath.Dir(dst); !created[dir] {
			if err := os.MkdirAll(dir, 0o755); err != nil {
				return fmt.Errorf("creating folder for /etc/%s: %w", clean, err)
			}
			created[dir] = true
		}
		if err := os.Symlink(target, dst); err != nil {
			return fmt.Errorf("creating link /etc/%s: %w", clean, err)
		}
	}
	return nil
}

// pivot makes the new root the root, detaches the old one, and makes the root
// read-only last.
func pivot() error {
	if err := os.Chdir(newRoot); err != nil {
		return fmt.Errorf("entering new root: %w", err)
	}
	// pivot_root(".", ".") stacks the old root on top of the new one; detaching
	// the top mount then leaves only the new root (the runc technique).
	if err := unix.PivotRoot(".", "."); err != nil {
		return fmt.Errorf("pivoting root: %w", err)
	}
	if err := unix.Unmount(".", unix.MNT_DETACH); err != nil {
		return fmt.Errorf("detaching old root: %w", err)
	}
	if err := os.Chdir("/"); err != nil {
		return fmt.Errorf("entering /: %w", err)
	}
	return nil
}

func makeRootReadOnly() error {
	return setattr("/", unix.MOUNT_ATTR_RDONLY|unix.MOUNT_ATTR_NOSUID|unix.MOUNT_ATTR_NODEV, false)
}
