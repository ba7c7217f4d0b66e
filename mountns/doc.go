// Package mountns finds the mount namespaces that still hold a mount and
// detaches the mount inside each of them.
//
// A mount point is a name inside one mount namespace. When a daemon that
// made a mount restarts into a new namespace (systemd's MountFlags=slave does
// that on every start) while processes of the old namespace live on (the
// containerd shims of a live-restore engine), the mount stays alive over
// there: umount2 in the new namespace answers EINVAL, and kernels without
// detach-on-rmdir (< 3.18, RHEL 7 with fs.may_detach_mounts=0) answer EBUSY
// to rmdir of the directory. This package finds every namespace that holds the
// mount (FindHolders) and detaches it there (DetachHolders, DetachAll).
//
// When not to use it: there is no need to scan before an unmount. Unmount the
// path in the caller's namespace first and treat success as done; the scan is
// the fallback for EINVAL/ENOENT ("not mounted here") and for a later EBUSY.
// Unmount does exactly that, and its fast path costs no scan and no extra
// syscalls. Nor is it a way to read mount tables: for the caller's own
// namespace, or one process's, use github.com/moby/sys/mountinfo; this package
// is for acting on mounts that live in namespaces other than the caller's.
// Everything that can unmount needs WithRoot, the one directory (the engine's
// data root) below which it may act.
//
// How namespaces are found: on kernels that have them (6.12 and later), the
// nsfs ioctls NS_MNT_GET_NEXT/NS_MNT_GET_PREV walk every mount namespace,
// including those no process holds (pinned by a bind-mounted nsfs file);
// /proc/*/ns/mnt, deduplicated by namespace inode, names the processes of each
// and is the whole answer on older kernels. Each namespace's mount table is read
// once, and a mount matches a target by its mount point translated through the
// holder's root, or, for overlay, by its upperdir=/workdir= options, which keep
// the host's absolute paths whatever the holder's root is. A caller whose root
// is not the host's (a container with the data root bind-mounted in) cannot
// place a holder's root that is; the target's directory is then found in the
// holder's view by filesystem identity (device, and directory inside it) and
// the holder's mount points are translated below that place only.
//
// How a mount is detached: on a goroutine that locks its OS thread and never
// unlocks it (the thread dies with the goroutine, so the foreign namespace never
// leaks into other goroutines), unshare(CLONE_FS), setns into the namespace,
// resolve the mount point from the holder's root without following any symlink,
// check that the mount found there is the one that was scanned (mount id and
// device, and where the kernel has them (6.8) the 64-bit unique mount id,
// since mount ids are reused), and umount2(MNT_DETACH|UMOUNT_NOFOLLOW) it relative to the verified
// parent directory. Every fd is opened before setns. Afterwards the namespace's
// table is read again and the report says what remains.
//
// Errors: only ENOENT and ESRCH mean that a process or namespace is gone. One
// that cannot be read for another reason (EACCES, EPERM: the caller is not
// root) is read through another process of its namespace or the nsfs walk,
// or else it is an error naming the pid or namespace, which errors.Is(err,
// fs.ErrPermission) recognises; it is never taken for "nothing held".
// Errors keep the operation, the path and the cause (PathError, like
// os.PathError), and errors.Is finds the cases callers tell apart:
// ErrOutsideRoot, ErrLiveContainer, ErrNotPermitted. They say what failed,
// not what to type: advice belongs to the caller (the nsdetach command).
//
// Safety: only mounts under the root given with WithRoot are ever detached
// (the root is resolved first, and one that resolves to / is refused), the
// caller's own namespace is never acted on through this path, paths read from
// mountinfo are treated as data, and every action is logged and reported.
package mountns
