package oldkernel

import (
	"context"
	"os"
	"path/filepath"
	"strconv"

	"github.com/moby/sys/mountinfo"
	"github.com/nsdetach/nsdetach/internal/procfs"
	"github.com/nsdetach/nsdetach/mountns"
	"golang.org/x/sys/unix"
)

// MountChecker reports whether dir is a mount point in a mount namespace
// other than the one of process callerPID. dir is absolute and as
// callerPID sees it (relative to its root, its last component not followed).
//
// Only a mount on dir itself makes rmdir fail with EBUSY: a foreign mount
// below dir leaves an entry in it (ENOTEMPTY, the kernel's answer).
type MountChecker func(ctx context.Context, callerPID int, dir string) (busy bool, err error)

// ProcMountChecker is a [MountChecker] that lists mount namespaces with
// package mountns and reads each foreign namespace's /proc/PID/mountinfo
// through one of its processes (a namespace no process holds is not
// consulted).
//
// A mount point is the pair (directory, name) it is mounted on, and that
// pair does not depend on the namespace: the directory is identified by
// its device and inode, which are the same in every view of it. So dir
// matches a mount of another namespace when the mount point's last
// component equals dir's and the directory above it, opened through the
// holder's root, is the directory above dir, opened through the caller's
// root. No path is translated between roots, so holders that are chrooted
// or pivot_rooted are matched as well as those that are not.
func ProcMountChecker(ctx context.Context, callerPID int, dir string) (bool, error) {
	name := filepath.Base(dir)
	if name == "/" || name == "." || name == ".." {
		return false, nil
	}
	caller := "/proc/" + strconv.Itoa(callerPID)
	callerNS, err := procfs.MountNamespace(callerPID)
	if err != nil {
		return false, err
	}
	want, err := statInRoot(caller, filepath.Dir(dir))
	if err != nil {
		// No parent, no directory to remove: the kernel says why.
		return false, nil
	}
	namespaces, err := mountns.SystemLister{}.List(ctx)
	if err != nil {
		return false, err
	}
	for _, ns := range namespaces {
		if ns.Inode == callerNS {
			continue
		}
		if err := ctx.Err(); err != nil {
			return false, err
		}
		for _, pid := range ns.PIDs {
			busy, err := holds(pid, name, want)
			if err != nil {
				// The pid exited or is exiting: ask the next one in the
				// namespace, if any.
				continue
			}
			if busy {
				return true, nil
			}
			break
		}
	}
	return false, nil
}

// holds reports whether the mount namespace of pid has a mount on an entry
// called name in the directory identified by want.
func holds(pid int, name string, want unix.Stat_t) (bool, error) {
	proc := "/proc/" + strconv.Itoa(pid)
	f, err := os.Open(proc + "/mountinfo")
	if err != nil {
		return false, err
	}
	defer f.Close()
	mounts, err := mountinfo.GetMountsFromReader(f, func(m *mountinfo.Info) (skip, stop bool) {
		return filepath.Base(m.Mountpoint) != name, false
	})
	if err != nil {
		return false, &os.PathError{Op: "mountinfo", Path: f.Name(), Err: err}
	}
	seen := make(map[string]bool)
	for _, m := range mounts {
		parent := filepath.Dir(m.Mountpoint)
		if seen[parent] {
			continue
		}
		seen[parent] = true
		st, err := statInRoot(proc, parent)
		if err != nil {
			continue
		}
		if st.Dev == want.Dev && st.Ino == want.Ino {
			return true, nil
		}
	}
	return false, nil
}

// statInRoot stats path as process proc sees it: resolved from its root
// directory, through its mount namespace, absolute symlinks staying inside
// that root.
func statInRoot(proc, path string) (unix.Stat_t, error) {
	var st unix.Stat_t
	root, err := unix.Open(proc+"/root", unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return st, &os.PathError{Op: "open", Path: proc + "/root", Err: err}
	}
	defer unix.Close(root)
	fd, err := unix.Openat2(root, path, &unix.OpenHow{
		Flags:   unix.O_PATH | unix.O_DIRECTORY | unix.O_CLOEXEC,
		Resolve: unix.RESOLVE_IN_ROOT | unix.RESOLVE_NO_MAGICLINKS,
	})
	if err != nil {
		return st, &os.PathError{Op: "openat2", Path: proc + "/root" + path, Err: err}
	}
	defer unix.Close(fd)
	if err := unix.Fstat(fd, &st); err != nil {
		return st, &os.PathError{Op: "fstat", Path: proc + "/root" + path, Err: err}
	}
	return st, nil
}
