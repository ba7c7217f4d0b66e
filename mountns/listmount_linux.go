package mountns

import (
	"sync"
	"unsafe"

	"github.com/moby/sys/mountinfo"
	"github.com/pkg/errors"
	"golang.org/x/sys/unix"
)

// On Linux 6.13 and later, listmount(2) and statmount(2) read any
// namespace's mounts by namespace id (from the nsfs walk), as binary
// records. The scan uses them for a namespace that no process is in, which
// it would otherwise have to enter (a thread, setns, a mountinfo read).
// For a namespace with processes, one /proc/PID/mountinfo read is cheaper
// than a statmount per mount, and the /proc walk that names the processes
// is needed anyway (README's performance section has the figures).

// mntIDReq is struct mnt_id_req of linux/mount.h in its second version
// (MNT_ID_REQ_SIZE_VER1, Linux 6.11), whose mnt_ns_id names the namespace
// to list or read; golang.org/x/sys v0.18.0 does not have it.
type mntIDReq struct {
	size    uint32
	spare   uint32
	mntID   uint64
	param   uint64
	mntNSID uint64
}

// Constants of linux/mount.h (not in golang.org/x/sys v0.18.0).
const (
	mntIDReqSizeVer1 = 32
	// lsmtRoot lists every mount of the namespace.
	lsmtRoot = ^uint64(0)

	statmountSBBasic  = 0x1   // sb_dev_major, sb_dev_minor, ...
	statmountMntBasic = 0x2   // mnt_id, mnt_parent_id, mnt_id_old, ...
	statmountMntRoot  = 0x8   // mnt_root
	statmountMntPoint = 0x10  // mnt_point
	statmountFSType   = 0x20  // fs_type
	statmountMntOpts  = 0x80  // mnt_opts (Linux 6.11)
	statmountSBSource = 0x200 // sb_source (Linux 6.13)

	// statmountNeeded is what a table entry needs; the kernel sets in mask
	// what it filled in.
	statmountNeeded = statmountSBBasic | statmountMntBasic | statmountMntRoot | statmountMntPoint | statmountFSType | statmountSBSource
)

// statmountHeader is the fixed part of struct statmount up to the fields
// read here; the strings follow the whole fixed part (statmountStrings
// bytes), at the offsets the u32 fields give.
type statmountHeader struct {
	size           uint32
	mntOpts        uint32
	mask           uint64
	sbDevMajor     uint32
	sbDevMinor     uint32
	sbMagic        uint64
	sbFlags        uint32
	fsType         uint32
	mntID          uint64
	mntParentID    uint64
	mntIDOld       uint32
	mntParentIDOld uint32
	mntAttr        uint64
	mntPropagation uint64
	mntPeerGroup   uint64
	mntMaster      uint64
	propagateFrom  uint64
	mntRoot        uint32
	mntPoint       uint32
	mntNSID        uint64
	fsSubtype      uint32
	sbSource       uint32
}

// statmountStrings is sizeof(struct statmount): where its strings start.
const statmountStrings = 512

// listMounts returns the unique ids of every mount of namespace nsID.
func listMounts(nsID uint64, ids []uint64) ([]uint64, error) {
	ids = ids[:0]
	req := mntIDReq{size: mntIDReqSizeVer1, mntID: lsmtRoot, mntNSID: nsID}
	buf := make([]uint64, 256)
	for {
		n, _, errno := unix.Syscall6(sysListmount, uintptr(unsafe.Pointer(&req)), uintptr(unsafe.Pointer(&buf[0])), uintptr(len(buf)), 0, 0, 0)
		if errno != 0 {
			return nil, errno
		}
		ids = append(ids, buf[:n]...)
		if int(n) < len(buf) {
			return ids, nil
		}
		req.param = buf[n-1] // continue after the last one
	}
}

// statMount reads mount id of namespace nsID into buf (grown when the
// strings do not fit) and returns the header and the buffer.
func statMount(nsID, id, mask uint64, buf []byte) (*statmountHeader, []byte, error) {
	req := mntIDReq{size: mntIDReqSizeVer1, mntID: id, param: mask, mntNSID: nsID}
	for {
		_, _, errno := unix.Syscall6(sysStatmount, uintptr(unsafe.Pointer(&req)), uintptr(unsafe.Pointer(&buf[0])), uintptr(len(buf)), 0, 0, 0)
		if errno == unix.EOVERFLOW && len(buf) < 1<<20 {
			buf = make([]byte, 2*len(buf))
			continue
		}
		if errno != 0 {
			return nil, buf, errno
		}
		return (*statmountHeader)(unsafe.Pointer(&buf[0])), buf, nil
	}
}

// statmountString returns the string at off in a statmount buffer.
func statmountString(buf []byte, off uint32) string {
	s := buf[statmountStrings+int(off):]
	for i, c := range s {
		if c == 0 {
			return string(s[:i])
		}
	}
	return string(s)
}

var listmountProbe struct {
	once sync.Once
	ok   bool
}

// HasListmount reports whether the kernel lists and reads any mount
// namespace's mounts by namespace id (listmount and statmount with
// mnt_ns_id, Linux 6.11; with the mount source, 6.13) and walks namespaces
// (NS_MNT_GET_NEXT), probed once on this process's own namespace. Without them the scan reads
// /proc/PID/mountinfo.
func HasListmount() bool {
	listmountProbe.once.Do(func() {
		listmountProbe.ok = probeListmount() == nil
	})
	return listmountProbe.ok
}

func probeListmount() error {
	if !HasNamespaceWalk() {
		return unix.ENOSYS
	}
	fd, err := unix.Open("/proc/self/ns/mnt", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	nsID, err := namespaceID(fd)
	if err != nil {
		return err
	}
	ids, err := listMounts(nsID, nil)
	if err != nil {
		return err
	}
	if len(ids) == 0 {
		return unix.ENOENT
	}
	h, _, err := statMount(nsID, ids[0], statmountNeeded, make([]byte, 4096))
	if err != nil {
		return err
	}
	if h.mask&statmountNeeded != statmountNeeded {
		return unix.EINVAL
	}
	return nil
}

// listedTable reads ns's mounts with listmount and statmount, in the view
// of the namespace's root (what a thread that has just joined the namespace
// sees, as readTable's other way), so viewPID is 0. uniq maps each mount id
// to its unique id. errGone when the namespace ended meanwhile.
func listedTable(ns Namespace, ids []uint64, buf []byte) (*table, []uint64, []byte, error) {
	ids, err := listMounts(ns.ID, ids)
	if err != nil {
		if err == unix.ENOENT {
			return nil, ids, buf, errGone
		}
		return nil, ids, buf, errors.Wrapf(err, "listmount of namespace mnt:[%d] (id %d)", ns.Inode, ns.ID)
	}
	t := &table{ns: ns, mounts: make([]*mountinfo.Info, 0, len(ids)), uniq: make(map[int]uint64, len(ids))}
	infos := make([]mountinfo.Info, len(ids))
	for i, id := range ids {
		var h *statmountHeader
		h, buf, err = statMount(ns.ID, id, statmountNeeded, buf)
		if err == unix.ENOENT {
			continue // unmounted meanwhile
		}
		if err != nil {
			return nil, ids, buf, errors.Wrapf(err, "statmount of mount %d in namespace mnt:[%d]", id, ns.Inode)
		}
		if h.mask&statmountNeeded != statmountNeeded {
			return nil, ids, buf, errors.Errorf("statmount of mount %d in namespace mnt:[%d]: the kernel filled in %#x of %#x", id, ns.Inode, h.mask, statmountNeeded)
		}
		mp := statmountString(buf, h.mntPoint)
		if mp == "" {
			continue // not reachable from the namespace's root: mountinfo leaves it out too
		}
		m := &infos[i]
		*m = mountinfo.Info{
			ID: int(h.mntIDOld), Parent: int(h.mntParentIDOld),
			Major: int(h.sbDevMajor), Minor: int(h.sbDevMinor),
			Root: statmountString(buf, h.mntRoot), Mountpoint: mp,
			FSType: statmountString(buf, h.fsType), Source: statmountString(buf, h.sbSource),
		}
		if m.FSType == "overlay" {
			// Its upperdir and workdir can match the target.
			var o *statmountHeader
			o, buf, err = statMount(ns.ID, id, statmountMntOpts, buf)
			if err == unix.ENOENT {
				continue
			}
			if err != nil {
				return nil, ids, buf, errors.Wrapf(err, "statmount of overlay mount %d in namespace mnt:[%d]", id, ns.Inode)
			}
			if o.mask&statmountMntOpts == 0 {
				return nil, ids, buf, errors.Errorf("statmount of overlay mount %d in namespace mnt:[%d]: no options", id, ns.Inode)
			}
			m.VFSOptions = statmountString(buf, o.mntOpts)
		}
		t.mounts = append(t.mounts, m)
		t.uniq[m.ID] = id
	}
	return t, ids, buf, nil
}
