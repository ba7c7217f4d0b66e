package mountns

import (
	"context"
	"io/fs"
	"runtime"
	"sort"
	"strconv"
	"sync"
	"unsafe"

	"github.com/nsdetach/nsdetach/internal/procfs"
	"github.com/pkg/errors"
	"golang.org/x/sys/unix"
)

// List returns every mount namespace, ordered by inode. A process whose
// namespace this caller may not read (EACCES: not root, or a process with
// privileges beyond the caller's) is tolerated only where the nsfs walk
// lists every namespace anyway: its namespace is then read through its other
// processes or by entering it. Without the walk its namespace could go
// unseen, and List fails naming the process.
func (SystemLister) List(ctx context.Context) ([]Namespace, error) {
	byIno, unreadable, err := procNamespaces(ctx)
	if err != nil {
		return nil, err
	}
	ids, err := walkNamespaces()
	switch {
	case err == nil:
		for ino := range ids {
			if _, ok := byIno[ino]; !ok {
				byIno[ino] = nil
			}
		}
	case unreadable != nil:
		return nil, errors.Wrap(unreadable, "listing mount namespaces")
	case errors.Is(err, fs.ErrPermission):
		// The kernel has the walk but this process may not use it: the
		// namespaces that no process holds would go unseen.
		return nil, errors.Wrap(err, "listing mount namespaces with NS_MNT_GET_NEXT")
	}
	out := make([]Namespace, 0, len(byIno))
	for ino, pids := range byIno {
		sort.Ints(pids)
		out = append(out, Namespace{Inode: ino, ID: ids[ino], PIDs: pids})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Inode < out[j].Inode })
	return out, nil
}

// procNamespaces maps namespace inode to the pids in it, from /proc/*/ns/mnt.
// unreadable names the first process whose namespace could not be read for
// a reason other than its exit.
func procNamespaces(ctx context.Context) (byIno map[uint64][]int, unreadable, err error) {
	pids, err := procfs.PIDs()
	if err != nil {
		return nil, nil, errors.Wrap(err, "listing mount namespaces: reading /proc")
	}
	// Readlink is the cost here (thousands of processes): split the work.
	const chunk = 256
	parts := make([]map[uint64][]int, (len(pids)+chunk-1)/chunk)
	errs := make([]error, len(parts))
	parallel(runtime.GOMAXPROCS(0), len(parts), func(p int) {
		m := make(map[uint64][]int)
		buf := make([]byte, 32)
		path := make([]byte, 0, 32)
		end := (p + 1) * chunk
		if end > len(pids) {
			end = len(pids)
		}
		for _, pid := range pids[p*chunk : end] {
			path = strconv.AppendInt(append(path[:0], "/proc/"...), int64(pid), 10)
			ino, err := procfs.MountNamespaceAt(string(append(path, "/ns/mnt"...)), buf)
			if isGone(err) {
				continue // exited meanwhile
			}
			if err != nil {
				if errs[p] == nil {
					errs[p] = errors.Wrapf(err, "mount namespace of pid %d", pid)
				}
				continue
			}
			m[ino] = append(m[ino], pid)
		}
		parts[p] = m
	})
	if err := ctx.Err(); err != nil {
		return nil, nil, err
	}
	for _, err := range errs {
		if err != nil && unreadable == nil {
			unreadable = err
		}
	}
	byIno = make(map[uint64][]int)
	for _, m := range parts {
		for ino, pids := range m {
			byIno[ino] = append(byIno[ino], pids...)
		}
	}
	return byIno, unreadable, nil
}

// isGone tells whether err means that a process or a namespace no longer
// exists (ENOENT, ESRCH). Any other error, a permission error first of all,
// means that it may exist and could not be read.
func isGone(err error) bool {
	return err != nil && (err == errGone || errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ESRCH))
}

// settle returns err for a failed read of pid's /proc files, or, when pid
// has exited meanwhile, ESRCH: some of those files answer EINVAL rather than
// ENOENT for a process on its way out.
func settle(pid int, err error) error {
	if err == nil || isGone(err) {
		return err
	}
	if _, nerr := procfs.MountNamespace(pid); isGone(nerr) {
		return nerr
	}
	return err
}

// nsfs ioctls of linux/nsfs.h: _IOR(NSIO=0xb7, nr, struct mnt_ns_info) with
// a 16-byte struct.
const (
	nsMntGetNext = 0x8010b70b
	nsMntGetPrev = 0x8010b70c
)

type mntNSInfo struct {
	size     uint32
	nrMounts uint32
	mntNSID  uint64
}

var walkProbe struct {
	once sync.Once
	ok   bool
}

// HasNamespaceWalk reports whether the kernel can enumerate mount namespaces
// with NS_MNT_GET_NEXT (probed once), which also finds namespaces no process
// holds.
func HasNamespaceWalk() bool {
	walkProbe.once.Do(func() {
		_, err := walkNamespaces()
		walkProbe.ok = err == nil
	})
	return walkProbe.ok
}

// walkNamespaces maps every mount namespace's inode to its 64-bit id, with
// the nsfs walk.
func walkNamespaces() (map[uint64]uint64, error) {
	self, err := unix.Open("/proc/self/ns/mnt", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	defer unix.Close(self)
	var st unix.Stat_t
	if err := unix.Fstat(self, &st); err != nil {
		return nil, err
	}
	id, err := namespaceID(self)
	if err != nil {
		return nil, err
	}
	out := map[uint64]uint64{st.Ino: id}
	for _, req := range []uint{nsMntGetNext, nsMntGetPrev} {
		err := walkFrom(self, req, func(fd int, id uint64) bool {
			if unix.Fstat(fd, &st) == nil {
				out[st.Ino] = id
			}
			return true
		})
		if err != nil {
			return nil, err
		}
	}
	return out, nil
}

// nsGetMntNSID is NS_GET_MNTNS_ID, _IOR(NSIO, 0x5, __u64).
const nsGetMntNSID = 0x8008b705

// namespaceID returns the 64-bit id of the mount namespace fd refers to.
func namespaceID(fd int) (uint64, error) {
	var id uint64
	_, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), nsGetMntNSID, uintptr(unsafe.Pointer(&id)))
	if errno != 0 {
		return 0, errno
	}
	return id, nil
}

// walkFrom follows req from fd until the end of the list, calling fn with
// each namespace fd (closed after fn returns) and id until fn returns false.
func walkFrom(fd int, req uint, fn func(fd int, id uint64) bool) error {
	cur := fd
	defer func() {
		if cur != fd {
			unix.Close(cur)
		}
	}()
	for {
		info := mntNSInfo{size: uint32(unsafe.Sizeof(mntNSInfo{}))}
		next, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(cur), uintptr(req), uintptr(unsafe.Pointer(&info)))
		if errno == unix.ENOENT {
			return nil
		}
		if errno != 0 {
			return errno
		}
		unix.CloseOnExec(int(next))
		if cur != fd {
			unix.Close(cur)
		}
		cur = int(next)
		if !fn(cur, info.mntNSID) {
			return nil
		}
	}
}

// openWalkedNamespace finds the namespace with inode ino (and id, unless 0)
// by the nsfs walk and returns an fd for it, or ENOENT.
func openWalkedNamespace(ino, id uint64) (int, error) {
	self, err := unix.Open("/proc/self/ns/mnt", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, err
	}
	defer unix.Close(self)
	found, dupErr := -1, error(nil)
	for _, req := range []uint{nsMntGetNext, nsMntGetPrev} {
		err := walkFrom(self, req, func(fd int, nsID uint64) bool {
			var st unix.Stat_t
			if unix.Fstat(fd, &st) == nil && st.Ino == ino && (id == 0 || id == nsID) {
				found, dupErr = unix.FcntlInt(uintptr(fd), unix.F_DUPFD_CLOEXEC, 0)
				return false
			}
			return true
		})
		if err != nil {
			return -1, err
		}
		if dupErr != nil {
			return -1, dupErr
		}
		if found >= 0 {
			return found, nil
		}
	}
	return -1, unix.ENOENT
}
