package mountns

import (
	"context"
	"os"

	"golang.org/x/sys/unix"
)

// Unmount detaches mountpoint in the caller's namespace and, only when the
// kernel answers that it is not mounted there (EINVAL or ENOENT), finds the
// namespaces that hold it and detaches it there (DetachAll). The fast path,
// a local unmount that succeeds, does no scan and no syscall besides umount2:
// the root is checked lexically, as the caller's own paths are trusted.
func Unmount(ctx context.Context, mountpoint string, opts ...Option) (Report, error) {
	cfg := newConfig(opts)
	rep := Report{Target: mountpoint, Root: cfg.root, DryRun: cfg.dryRun}
	if err := checkPath("mount point", mountpoint); err != nil {
		return rep, err
	}
	if err := checkPath("root", cfg.root); err != nil || cfg.root == "/" {
		_, gerr := newGuard(cfg.root)
		return rep, gerr
	}
	if !within(mountpoint, cfg.root) {
		return rep, &OutsideRootError{Path: mountpoint, Root: cfg.root}
	}
	if !cfg.dryRun {
		err := unix.Unmount(mountpoint, unix.MNT_DETACH|unix.UMOUNT_NOFOLLOW)
		switch err {
		case nil:
			rep.Local = LocalUnmounted
			return rep, nil
		case unix.EINVAL, unix.ENOENT:
		default:
			return rep, &os.PathError{Op: "umount2", Path: mountpoint, Err: err}
		}
	}
	full, err := DetachAll(ctx, mountpoint, opts...)
	full.Local = LocalNotMounted
	return full, err
}
