package initproc

import (
	"encoding/binary"
	"fmt"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Landlock access rights from linux/landlock.h, with the ABI that added them.
const (
	llExecute    = 1 << 0
	llWriteFile  = 1 << 1
	llReadFile   = 1 << 2
	llReadDir    = 1 << 3
	llRemoveDir  = 1 << 4
	llRemoveFile = 1 << 5
	llMakeChar   = 1 << 6
	llMakeDir    = 1 << 7
	llMakeReg    = 1 << 8
	llMakeSock   = 1 << 9
	llMakeFifo   = 1 << 10
	llMakeBlock  = 1 << 11
	llMakeSym    = 1 << 12
	llRefer      = 1 << 13 // ABI 2
	llTruncate   = 1 << 14 // ABI 3
	llIoctlDev   = 1 << 15 // ABI 5

	llNetBindTCP    = 1 << 0 // ABI 4
	llNetConnectTCP = 1 << 1 // ABI 4

	llScopeAbstractUnix = 1 << 0 // ABI 6
	llScopeSignal       = 1 << 1 // ABI 6

	llRulePathBeneath = 1
)

const llWriteAll = llWriteFile | llRemoveDir | llRemoveFile | llMakeDir | llMakeReg |
	llMakeSock | llMakeFifo | llMakeSym

// landlockABI returns the kernel's Landlock ABI version, or 0 without Landlock.
func landlockABI() int {
	v, _, errno := unix.Syscall(unix.SYS_LANDLOCK_CREATE_RULESET, 0, 0,
		unix.LANDLOCK_CREATE_RULESET_VERSION)
	if errno != 0 {
		return 0
	}
	return int(v)
}

// landlockRuleset is a Landlock ruleset under construction. The program may
// read everywhere, execute only from /usr and /work, and write only to /work,
// /tmp, /dev/shm and the devices. It gets no TCP and, from ABI 6, no signals
// or abstract unix sockets outside the domain.
type landlockRuleset struct {
	fd  int
	abi int
	fs  uint64 // the handled file system rights
}

// newLandlockRuleset creates the ruleset with the rules for paths that exist
// before the run: /, /usr and /dev. It returns nil without Landlock.
func newLandlockRuleset() (*landlockRuleset, error) {
	abi := landlockABI()
	if abi == 0 {
		return nil, nil
	}
	fs := uint64(llExecute | llReadFile | llReadDir | llWriteAll | llMakeChar | llMakeBlock)
	if abi >= 2 {
		fs |= llRefer
	}
	if abi >= 3 {
		fs |= llTruncate
	}
	if abi >= 5 {
		fs |= llIoctlDev
	}
	var attr [3]uint64
	attr[0] = fs
	size := 8
	if abi >= 4 {
		attr[1] = llNetBindTCP | llNetConnectTCP
		size = 16
	}
	if abi >= 6 {
		attr[2] = llScopeAbstractUnix | llScopeSignal
		size = 24
	}
	rfd, _, errno := unix.Syscall(unix.SYS_LANDLOCK_CREATE_RULESET,
		uintptr(unsafe.Pointer(&attr[0])), uintptr(size), 0)
	if errno != 0 {
		return nil, fmt.Errorf("creating landlock ruleset: %w", errno)
	}
	rs := &landlockRuleset{fd: int(rfd), abi: abi, fs: fs}
	read := uint64(llReadFile | llReadDir)
	if err := rs.add([]landlockRule{
		{"/", read},
		{"/usr", read | llExecute},
		{"/dev", read | llWriteFile | (fs & (llTruncate | llIoctlDev))},
	}); err != nil {
		unix.Close(rs.fd)
		return nil, err
	}
	return rs, nil
}

type landlockRule struct {
	path   string
	access uint64
}

func (rs *landlockRuleset) add(rules []landlockRule) error {
	for _, r := range rules {
		if err := addPathRule(rs.fd, r.path, r.access); err != nil {
			return err
		}
	}
	return nil
}

// restrictSelf adds the rules for the run's file systems, which must be
// mounted by now, and restricts the calling thread, and so the program it
// forks. The thread needs no_new_privs set. It returns the ABI applied.
func (rs *landlockRuleset) restrictSelf() (int, error) {
	defer unix.Close(rs.fd)
	writable := rs.fs &^ (llMakeChar | llMakeBlock | llIoctlDev)
	if err := rs.add([]landlockRule{
		{"/work", writable},
		{"/tmp", writable &^ llExecute},
		{"/dev/shm", writable &^ llExecute},
	}); err != nil {
		return 0, err
	}
	if err := thisThread(unix.SYS_LANDLOCK_RESTRICT_SELF, uintptr(rs.fd), 0, 0); err != nil {
		return 0, fmt.Errorf("restricting with landlock: %w", err)
	}
	return rs.abi, nil
}

func addPathRule(rulesetFD int, path string, access uint64) error {
	fd, err := unix.Open(path, unix.O_PATH|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("opening %s for a landlock rule: %w", path, err)
	}
	defer unix.Close(fd)

	// struct landlock_path_beneath_attr is packed: u64 access, s32 fd.
	var buf [12]byte
	binary.LittleEndian.PutUint64(buf[0:], access)
	binary.LittleEndian.PutUint32(buf[8:], uint32(fd))
	_, _, errno := unix.Syscall6(unix.SYS_LANDLOCK_ADD_RULE, uintptr(rulesetFD),
		llRulePathBeneath, uintptr(unsafe.Pointer(&buf[0])), 0, 0, 0)
	if errno != 0 {
		return fmt.Errorf("adding landlock rule for %s: %w", path, errno)
	}
	return nil
}
