package mountns

import (
	"context"
	"os"

	"golang.org/x/sys/unix"
)

// Unmount detaches mountpoint in the caller's namespace and, only when the
// kernel answers that it is not mounted there (EINVAL or ENOENT), finds the
// namespaces that hold it and detaches it there (DetachAll). The fast path,
// a local unmount that succeeds, does no scan: besides umount2 it costs the
// lstat calls that resolve the root and mountpoint (ResolveUnderRoot), so
// that a symlink cannot lead the unmount outside the root.
func Unmount(ctx context.Context, mountpoint string, opts ...Option) (Report, error) {
	cfg := newConfig(opts)
	rep := Report{Target: mountpoint, Root: cfg.root, DryRun: cfg.dryRun}
	if err := checkPath("mount point", mountpoint); err != nil {
		return rep, err
	}
	real, err := ResolveUnderRoot(mountpoint, opts...)
	if err != nil {
		return rep, err
	}
	if !cfg.dryRun {
		err := unix.Unmount(real, unix.MNT_DETACH|unix.UMOUNT_NOFOLLOW)
		switch err {
		case nil:
			rep.Local = LocalUnmounted
			return rep, nil
		case unix.EINVAL, unix.ENOENT:
		default:
			return rep, &os.PathError{Op: "umount2", Path: real, Err: err}
		}
	}
	full, err := DetachAll(ctx, mountpoint, opts...)
	full.Local = LocalNotMounted
	return full, err
}
