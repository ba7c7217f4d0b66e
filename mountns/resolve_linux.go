package mountns

import (
	"fmt"
	"os"
	"path"
	"strconv"
	"strings"
	"sync"

	"github.com/pkg/errors"
	"golang.org/x/sys/unix"
)

// refusal is a reason the detach path leaves a mount alone: what was found at
// the path is not, or cannot be shown to be, the mount that was scanned.
type refusal struct {
	reason string
	err    error
}

func (r *refusal) Error() string { return r.reason }
func (r *refusal) Unwrap() error { return r.err }

var openat2Probe struct {
	once sync.Once
	ok   bool
}

// hasOpenat2 reports whether the kernel has openat2 (5.6 and later).
func hasOpenat2() bool {
	openat2Probe.once.Do(func() {
		fd, err := unix.Openat2(unix.AT_FDCWD, "/", &unix.OpenHow{Flags: unix.O_PATH | unix.O_CLOEXEC})
		if err == nil {
			unix.Close(fd)
		}
		openat2Probe.ok = err != unix.ENOSYS
	})
	return openat2Probe.ok
}

// resolver opens mount points below a root without following symlinks and
// reads their mount ids. legacy makes it take the path of kernels older
// than 5.8 (component walk instead of openat2, name_to_handle_at instead of
// statx(STATX_MNT_ID), no unique mount ids) where the new calls exist, so
// tests cover both.
type resolver struct{ legacy bool }

// resolver returns the resolver that cfg's options ask for.
func (c *config) resolver() resolver { return resolver{legacy: c.legacyResolve} }

// openBeneath opens rel below dirfd following no symlink in any component and
// never leaving dirfd: with openat2(RESOLVE_BENEATH|RESOLVE_NO_SYMLINKS|
// RESOLVE_NO_MAGICLINKS) where the kernel has it, else one O_PATH|O_NOFOLLOW
// component at a time. A symlink on the way gives ELOOP.
func (r resolver) openBeneath(dirfd int, rel string, flags int) (int, error) {
	if hasOpenat2() && !r.legacy {
		return unix.Openat2(dirfd, rel, &unix.OpenHow{
			Flags:   uint64(flags | unix.O_PATH | unix.O_CLOEXEC), // no O_NOFOLLOW: a trailing symlink must give ELOOP too
			Resolve: unix.RESOLVE_BENEATH | unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS,
		})
	}
	cur, err := unix.FcntlInt(uintptr(dirfd), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		return -1, err
	}
	if rel == "." {
		return cur, nil
	}
	parts := strings.Split(rel, "/")
	for i, c := range parts {
		if c == "" || c == "." || c == ".." {
			unix.Close(cur)
			return -1, unix.EXDEV
		}
		fl := unix.O_PATH | unix.O_NOFOLLOW | unix.O_CLOEXEC
		if i < len(parts)-1 {
			fl |= unix.O_DIRECTORY
		} else {
			fl |= flags
		}
		next, err := unix.Openat(cur, c, fl, 0)
		if err != nil {
			if err == unix.ENOTDIR && isSymlinkAt(cur, c) {
				err = unix.ELOOP
			}
			unix.Close(cur)
			return -1, err
		}
		unix.Close(cur)
		var st unix.Stat_t
		if err := unix.Fstat(next, &st); err != nil {
			unix.Close(next)
			return -1, err
		}
		if st.Mode&unix.S_IFMT == unix.S_IFLNK {
			unix.Close(next)
			return -1, unix.ELOOP
		}
		cur = next
	}
	return cur, nil
}

// isSymlinkAt tells whether name in dirfd is a symlink, to name an error.
func isSymlinkAt(dirfd int, name string) bool {
	var st unix.Stat_t
	return unix.Fstatat(dirfd, name, &st, unix.AT_SYMLINK_NOFOLLOW) == nil && st.Mode&unix.S_IFMT == unix.S_IFLNK
}

// mountIDOf returns the mount id and device of the file fd refers to: from
// statx(STATX_MNT_ID) on kernels >= 5.8; else the device from fstat and the
// mount id from /proc/self/fdinfo (3.15, and RHEL 7's 3.10, which has it for
// CRIU), else from name_to_handle_at, which most filesystems answer but
// overlayfs only with its NFS export on (EOPNOTSUPP otherwise). Kernels
// before 4.11 have no statx at all (ENOSYS), and 4.11 to 5.7 have it
// without the mount id.
func (r resolver) mountIDOf(fd int) (id int, major, minor uint32, err error) {
	if !r.legacy {
		var stx unix.Statx_t
		err := unix.Statx(fd, "", unix.AT_EMPTY_PATH|unix.AT_SYMLINK_NOFOLLOW, unix.STATX_MNT_ID|unix.STATX_TYPE, &stx)
		if err == nil && stx.Mask&unix.STATX_MNT_ID != 0 {
			return int(stx.Mnt_id), stx.Dev_major, stx.Dev_minor, nil
		}
		if err != nil && err != unix.ENOSYS {
			return 0, 0, 0, &os.PathError{Op: "statx", Path: "fd " + strconv.Itoa(fd), Err: err}
		}
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return 0, 0, 0, &os.PathError{Op: "fstat", Path: "fd " + strconv.Itoa(fd), Err: err}
	}
	major, minor = unix.Major(st.Dev), unix.Minor(st.Dev)
	id, ferr := fdinfoMountID(fd)
	if ferr == nil {
		return id, major, minor, nil
	}
	_, id, err = unix.NameToHandleAt(fd, "", unix.AT_EMPTY_PATH)
	if err != nil {
		return 0, 0, 0, errors.Errorf("no mount id on this kernel: %v; name_to_handle_at: %v", ferr, err)
	}
	return id, major, minor, nil
}

// fdinfoMountID reads the "mnt_id:" line of this process's fdinfo of fd,
// through the fdinfo directory opened in the caller's namespace (a thread
// that joined a holder's namespace may have no /proc there).
func fdinfoMountID(fd int) (int, error) {
	dir, err := fdinfoDir()
	if err != nil {
		return 0, err
	}
	name := strconv.Itoa(fd)
	f, err := unix.Openat(dir, name, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return 0, &os.PathError{Op: "open", Path: "/proc/self/fdinfo/" + name, Err: err}
	}
	defer unix.Close(f)
	var buf [512]byte
	n, err := unix.Read(f, buf[:])
	if err != nil {
		return 0, &os.PathError{Op: "read", Path: "/proc/self/fdinfo/" + name, Err: err}
	}
	for _, line := range strings.Split(string(buf[:n]), "\n") {
		if v, ok := strings.CutPrefix(line, "mnt_id:"); ok {
			return strconv.Atoi(strings.TrimSpace(v))
		}
	}
	return 0, errors.New("no mnt_id in /proc/self/fdinfo (kernel before 3.15)")
}

var selfFdinfo struct {
	once sync.Once
	fd   int
	err  error
}

// fdinfoDir returns an fd of /proc/self/fdinfo, opened once, for the
// process's life. enter opens it before any setns.
func fdinfoDir() (int, error) {
	selfFdinfo.once.Do(func() {
		selfFdinfo.fd, selfFdinfo.err = unix.Open("/proc/self/fdinfo", unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		if selfFdinfo.err != nil {
			selfFdinfo.err = &os.PathError{Op: "open", Path: "/proc/self/fdinfo", Err: selfFdinfo.err}
		}
	})
	return selfFdinfo.fd, selfFdinfo.err
}

// statxMntIDUnique is STATX_MNT_ID_UNIQUE (Linux 6.8): statx then fills
// stx_mnt_id with the mount's 64-bit id, which, unlike mountinfo's mount
// id, is never reused. golang.org/x/sys v0.18.0 lacks the name.
const statxMntIDUnique = 0x4000

var uniqueIDProbe struct {
	once sync.Once
	ok   bool
}

// HasUniqueMountIDs reports whether the kernel gives 64-bit unique mount
// ids with statx (probed once). Where it does, the detach path verifies a
// mount by that id; elsewhere by mount id and device, which a mount made
// after the scan can share with the scanned one (mount ids are reused).
func HasUniqueMountIDs() bool {
	uniqueIDProbe.once.Do(func() {
		var stx unix.Statx_t
		err := unix.Statx(unix.AT_FDCWD, "/", unix.AT_SYMLINK_NOFOLLOW, statxMntIDUnique, &stx)
		uniqueIDProbe.ok = err == nil && stx.Mask&statxMntIDUnique != 0
	})
	return uniqueIDProbe.ok
}

// useUniqueIDs tells whether mounts are verified by unique id: where the
// kernel has them and the resolver is not made to take the path of older
// kernels (legacy), which have none.
func (r resolver) useUniqueIDs() bool { return !r.legacy && HasUniqueMountIDs() }

// uniqueMountIDOf returns the 64-bit unique id of the mount fd is on; 0 on
// kernels without them.
func (r resolver) uniqueMountIDOf(fd int) (uint64, error) {
	if !r.useUniqueIDs() {
		return 0, nil
	}
	var stx unix.Statx_t
	if err := unix.Statx(fd, "", unix.AT_EMPTY_PATH|unix.AT_SYMLINK_NOFOLLOW, statxMntIDUnique, &stx); err != nil {
		return 0, err
	}
	if stx.Mask&statxMntIDUnique == 0 {
		return 0, nil
	}
	return stx.Mnt_id, nil
}

// openMount opens m's mount point below rootfd (the holder's root) without
// following any symlink, and returns an fd of the parent directory, the
// last component and an O_PATH fd of the mount point itself.
func (r resolver) openMount(rootfd int, m Mount) (parent int, name string, fd int, err error) {
	rel, err := relMountpoint(m)
	if err != nil {
		return -1, "", -1, err
	}
	dir, name := path.Split(rel)
	dir = strings.TrimSuffix(dir, "/")
	if dir == "" {
		dir = "."
	}
	parent, err = r.openBeneath(rootfd, dir, unix.O_DIRECTORY)
	if err != nil {
		return -1, "", -1, resolveRefusal(m.Mountpoint, err)
	}
	fd, err = r.openBeneath(parent, name, 0)
	if err != nil {
		unix.Close(parent)
		return -1, "", -1, resolveRefusal(m.Mountpoint, err)
	}
	return parent, name, fd, nil
}

// relMountpoint returns m's mount point relative to the holder's root, or
// a refusal when no clean path reaches it.
func relMountpoint(m Mount) (string, error) {
	mp := m.Mountpoint
	if strings.HasSuffix(mp, "//deleted") {
		return "", &refusal{reason: "mount point was deleted: no path reaches it", err: unix.ENOENT}
	}
	rel := strings.TrimPrefix(mp, "/")
	if rel == "" || !path.IsAbs(mp) || path.Clean(mp) != mp {
		return "", &refusal{reason: fmt.Sprintf("mount point %q is not a clean path below the holder's root", mp), err: unix.EINVAL}
	}
	return rel, nil
}

// recordUniqueIDs sets the UniqueID of each mount of h, found through the
// root of its view process, when the mount there is still the scanned one
// (mount id and device); the detach path then verifies by that id. Mounts
// it cannot reach keep 0, and are verified the old way.
func (r resolver) recordUniqueIDs(h *Holder) {
	if h.ViewPID <= 0 || !r.useUniqueIDs() {
		return
	}
	rootfd, err := unix.Open("/proc/"+strconv.Itoa(h.ViewPID)+"/root", unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return
	}
	defer unix.Close(rootfd)
	for i := range h.Mounts {
		m := &h.Mounts[i]
		if m.HolderRoot {
			continue
		}
		// One open of the whole path, as openMount's two make it (no
		// symlink, nothing above the root): no umount follows here.
		rel, err := relMountpoint(*m)
		if err != nil {
			continue
		}
		fd, err := r.openBeneath(rootfd, rel, 0)
		if err != nil {
			continue
		}
		if id, major, minor, err := r.mountIDOf(fd); err == nil && id == m.ID && int(major) == m.Major && int(minor) == m.Minor {
			m.UniqueID, _ = r.uniqueMountIDOf(fd)
		}
		unix.Close(fd)
	}
}

// resolveMount finds m's mount point below rootfd (the holder's root) without
// following any symlink and checks that the mount on top there is m (same
// mount id, same device). It returns an O_PATH fd of the verified parent
// directory and the last component, for a relative umount2.
func (r resolver) resolveMount(rootfd int, m Mount) (parent int, name string, err error) {
	mp := m.Mountpoint
	parent, name, fd, err := r.openMount(rootfd, m)
	if err != nil {
		return -1, "", err
	}
	defer unix.Close(fd)
	refuse := func(why *refusal) (int, string, error) {
		unix.Close(parent)
		return -1, "", why
	}
	id, major, minor, err := r.mountIDOf(fd)
	if err != nil {
		return refuse(&refusal{reason: "cannot read the mount id at " + mp + ": " + err.Error(), err: err})
	}
	if id != m.ID {
		return refuse(&refusal{reason: fmt.Sprintf("the mount at %s is mount %d, not the scanned mount %d (over-mounted, renamed or replaced since the scan)", mp, id, m.ID), err: unix.ESTALE})
	}
	if int(major) != m.Major || int(minor) != m.Minor {
		return refuse(&refusal{reason: fmt.Sprintf("the mount at %s is on device %d:%d, not the scanned %d:%d", mp, major, minor, m.Major, m.Minor), err: unix.ESTALE})
	}
	if m.UniqueID != 0 {
		// Mount ids are reused: a mount made since the scan can have the
		// scanned one's id and device; the unique id tells them apart.
		uid, err := r.uniqueMountIDOf(fd)
		if err != nil {
			return refuse(&refusal{reason: "cannot read the unique mount id at " + mp + ": " + err.Error(), err: err})
		}
		if uid != m.UniqueID {
			return refuse(&refusal{reason: fmt.Sprintf("the mount at %s has unique mount id %d, not the scanned %d: replaced since the scan by a mount that reuses id %d", mp, uid, m.UniqueID, m.ID), err: unix.ESTALE})
		}
	}
	return parent, name, nil
}

func resolveRefusal(mp string, err error) error {
	switch err {
	case unix.ELOOP:
		return &refusal{reason: "a symlink lies on the way to " + mp + " in the holder's view; not following it", err: err}
	case unix.EXDEV:
		return &refusal{reason: "resolving " + mp + " would leave the holder's root", err: err}
	case unix.ENOENT, unix.ENOTDIR:
		return &refusal{reason: mp + " no longer exists in the holder's view", err: err}
	}
	return &refusal{reason: "resolving " + mp + ": " + (&os.PathError{Op: "openat2", Path: mp, Err: err}).Error(), err: err}
}
