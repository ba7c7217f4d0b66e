package mountns

import (
	"os"

	"github.com/nsdetach/nsdetach/internal/procfs"
	"golang.org/x/sys/unix"
)

// WithLegacyResolve switches the resolver to the path of pre-5.8 kernels
// (no statx mount ids, so no unique ones either) when on.
func WithLegacyResolve(on bool) Option { return func(c *config) { c.legacyResolve = on } }

// LoseUmountRace makes every unmount of the detach path lose a race with
// another cleaner: the mount is detached (as the other would) just before
// the detach path's own umount2.
func LoseUmountRace() Option {
	return func(c *config) {
		c.umount2 = func(name string, flags int) error {
			if err := unix.Unmount(name, flags); err != nil {
				return err
			}
			return unix.Unmount(name, flags)
		}
	}
}

// FailReread makes the detach path's re-read of a namespace's mount table
// fail with err.
func FailReread(err error) Option { return func(c *config) { c.rereadErr = err } }

// HostPaths reads the whole mount tables of this process and of pid (another
// namespace's process), and returns where each of pid's mount points lies in
// this process's view: through pid's root, where it has a place here
// (placed), and through the target's filesystem (targetViews).
func HostPaths(pid int, target string) (byRoot, byFS map[string]string, placed bool, err error) {
	callerNS, err := procfs.MountNamespace(os.Getpid())
	if err != nil {
		return nil, nil, false, err
	}
	caller, err := readPIDTable(Namespace{Inode: callerNS}, os.Getpid(), nil)
	if err != nil {
		return nil, nil, false, err
	}
	ns, err := procfs.MountNamespace(pid)
	if err != nil {
		return nil, nil, false, err
	}
	holder, err := readPIDTable(Namespace{Inode: ns}, pid, nil)
	if err != nil {
		return nil, nil, false, err
	}
	prefix, placed := placeRoot(holder.mounts, caller.mounts, "")
	views := targetViews(holder.mounts, caller.mounts, target)
	byRoot, byFS = map[string]string{}, map[string]string{}
	for _, m := range holder.mounts {
		if placed {
			byRoot[m.Mountpoint] = hostPath(rootView(prefix), m.Mountpoint)
		}
		byFS[m.Mountpoint] = hostPath(views, m.Mountpoint)
	}
	return byRoot, byFS, placed, nil
}

// WithoutListmount makes the scan enter a namespace without processes and
// read its mountinfo even where the kernel has listmount and statmount by
// namespace id, as on kernels before 6.13.
func WithoutListmount() Option { return func(c *config) { c.listmount = false } }
