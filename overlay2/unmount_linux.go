package overlay2

import (
	"context"
	"os"
	"path/filepath"

	"github.com/moby/sys/mountinfo"
	"github.com/nsdetach/nsdetach/mountns"
	"github.com/pkg/errors"
	"golang.org/x/sys/unix"
)

// Unmount is the body of moby's overlay2 Driver.Put once the layer's
// reference count reached zero. It detaches mountpoint (the layer's merged
// directory) here; when the kernel answers that it is not mounted here
// (EINVAL, ENOENT: a previous daemon in another namespace mounted it) it
// detaches the copies that other namespaces hold; then it removes the
// mount point with RemoveMountpoint.
//
// WithRoot (the driver's home) is required and mountpoint must be under it.
// The fast path, where the unmount and the rmdir succeed, scans nothing. The
// error is nil when the mount point is gone from every namespace, and a
// *HeldError naming the holders when it is not. A running container whose
// root filesystem is the layer keeps it (its mount is not on the mount
// point, and is never detached from under it): mountns logs that as a
// warning through WithLogger, and it is not an error here.
func (l *Layers) Unmount(ctx context.Context, mountpoint string, opts ...mountns.Option) error {
	if err := checkMountpoint(mountpoint); err != nil {
		return err
	}
	// A running container's layer (see IsLive) keeps its merged directory.
	return unmount(ctx, mountpoint, l.liveMountpoint(mountpoint), l, opts)
}

// UnmountMountpoint is the body of Unmount for any mount point under the
// root given with WithRoot, a layer's merged directory or not (package
// snapshotter's Unmount shares it): unmount here, detach the copies other
// namespaces hold when the kernel says it is not mounted here, remove the
// mount point (RemoveMountpoint). keep says that a running container uses
// the mount point (runc exec works in it): then only the caller's own mount
// goes, and the directory and the other namespaces' copies stay.
func UnmountMountpoint(ctx context.Context, mountpoint string, keep bool, opts ...mountns.Option) error {
	return unmount(ctx, mountpoint, keep, nil, opts)
}

// unmount is UnmountMountpoint, with the Layers whose RemoveMountpoint
// removes the mount point.
func unmount(ctx context.Context, mountpoint string, keep bool, l *Layers, opts []mountns.Option) error {
	opts = withLayout(opts)
	// Resolved first: a root or a path through a symlink must not lead the
	// unmount below (or the rmdir after it) outside the root.
	real, err := mountns.ResolveUnderRoot(mountpoint, opts...)
	if err != nil {
		return err
	}
	if keep {
		if err := unix.Unmount(real, unix.MNT_DETACH|unix.UMOUNT_NOFOLLOW); err != nil && err != unix.EINVAL && err != unix.ENOENT {
			return &os.PathError{Op: "umount2", Path: real, Err: err}
		}
		return nil
	}
	_, err = mountns.Unmount(ctx, mountpoint, opts...)
	var de *mountns.DetachError
	if err != nil && !errors.As(err, &de) {
		return err
	}
	// Copies that could not be detached are not final: a kernel with
	// detach-on-rmdir drops them with the mount point, an older one refuses
	// the rmdir, which RemoveMountpoint handles.
	return l.RemoveMountpoint(ctx, mountpoint, opts...)
}

// RemoveMountpoint removes an unmounted mount point; when rmdir answers EBUSY
// (a kernel without detach-on-rmdir, and another namespace still has a mount
// there) it detaches the foreign copies and tries once more. moby's Put has
// already unmounted locally when it gets here, so this is also what a
// wrapper calls after it. A missing mount point is success. The root given
// with WithRoot bounds what is detached in other namespaces; the rmdir of
// the caller's own directory needs no scan and none is made.
func (l *Layers) RemoveMountpoint(ctx context.Context, mountpoint string, opts ...mountns.Option) error {
	opts = withLayout(opts)
	if err := checkMountpoint(mountpoint); err != nil {
		return err
	}
	real, err := mountns.ResolveUnderRoot(mountpoint, opts...)
	if err != nil {
		return err
	}
	if l.liveMountpoint(mountpoint) {
		return nil // a running container's layer keeps its merged directory (IsLive)
	}
	// The kernel's answer, or in tests an old kernel's (mountns.WithRemover).
	rmdir := mountns.RemoverOf(opts...).Rmdir
	err = rmdir(real)
	switch {
	case err == nil, errors.Is(err, unix.ENOENT):
		return nil
	case !errors.Is(err, unix.EBUSY):
		return &os.PathError{Op: "rmdir", Path: real, Err: err}
	}
	rep, derr := mountns.DetachAll(ctx, mountpoint, opts...)
	var de *mountns.DetachError
	if derr != nil && !errors.As(derr, &de) {
		return derr
	}
	if err = rmdir(real); err == nil || errors.Is(err, unix.ENOENT) {
		return nil
	}
	here, _ := mountinfo.Mounted(real)
	return &HeldError{Op: OpRmdir, Path: mountpoint, Report: rep, Err: err, MountedHere: here, detach: derr}
}

// DetachLayer detaches, in every other mount namespace, the mounts of the
// layer directory dir (home/<id>): mounts at or below it, and overlays whose
// upper or work directory is in it. Driver.Remove calls it before it deletes
// the directory, and Driver.Get before it mounts a layer that a previous
// daemon left mounted. It always scans. The error is a *HeldError when a
// copy remains, in particular when a running container has the layer as its
// root filesystem (HeldError.Live): the caller must then not delete the
// layer's data, and Unmount and RemoveMountpoint keep its merged directory
// until a later DetachLayer finds the container gone (IsLive).
//
// A pass that failed before it had read every namespace (a listing or
// reading error) says nothing about the container: what the last complete
// pass found stays in force, or a failed Remove would let the next Put
// delete a running container's merged directory.
func (l *Layers) DetachLayer(ctx context.Context, dir string, opts ...mountns.Option) error {
	opts = withLayout(opts)
	// DetachAll resolves the root and dir itself (a root that resolves to /
	// is refused there).
	rep, err := mountns.DetachAll(ctx, dir, opts...)
	var de *mountns.DetachError
	if err == nil || errors.As(err, &de) {
		l.setLive(dir, len(live(rep)) > 0)
	}
	if de != nil {
		return &HeldError{Op: OpRemove, Path: dir, Report: rep, Err: err}
	}
	return err
}

// checkMountpoint accepts only an absolute, clean mount point.
func checkMountpoint(mountpoint string) error {
	if !filepath.IsAbs(mountpoint) || filepath.Clean(mountpoint) != mountpoint {
		return &mountns.PathError{Op: "mount point", Path: mountpoint, Err: errNotAbsClean}
	}
	return nil
}
