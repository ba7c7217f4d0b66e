// Package snapshotter holds what moby's containerd image store needs when a
// container's root filesystem mount lives on in other mount namespaces.
//
// With the containerd image store (the default since Docker Engine 29), the
// daemon mounts each container's root filesystem, as the snapshotter
// describes it, at DATA/rootfs/<snapshotter>/<container id> (moby's
// daemon/snapshotter refCountMounter), and unmounts it and removes that
// directory when the last reference goes. A daemon restarted into a new
// mount namespace (systemd's MountFlags=slave) with live-restore cannot see
// the mounts the previous daemon made: the unmount answers EINVAL, the copy
// in the old namespace, kept alive by the containerd shims, keeps the
// snapshot's upper directory in use after containerd removed the snapshot,
// and on kernels without detach-on-rmdir removing the directory fails with
// EBUSY, so it is left behind.
//
// The mounter holds a Mountpoints for its lifetime (a field of moby's
// refCountMounter with the patch series) and calls it. Its Unmount is the
// body of the mounter's Unmount once the reference count reached zero:
// unmount here, find and detach the copies of other namespaces only when
// the kernel says "not mounted here" or "busy", and remove the mount point.
// Its DetachStale is what the mounter's Mount calls before it mounts over a
// mount point that a previous daemon left behind: it detaches the copies
// that no running container uses, and remembers a mount point that a
// running container restored with live-restore still runs on, whose
// directory that Mountpoints' Unmount then keeps for as long as that
// container runs (runc exec works in it).
//
// When not to use it: a mount point that this daemon mounted and that no
// other namespace holds needs nothing of this package beyond Unmount, whose
// fast path (the unmount and the rmdir succeed) scans nothing. DetachStale
// always scans; call it only for a mount point that exists but is not
// mounted in the caller's namespace.
//
// This package must not import any moby module: moby vendors it and its
// snapshotter mounter calls it.
package snapshotter
