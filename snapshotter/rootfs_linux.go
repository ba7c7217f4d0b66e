package snapshotter

import (
	"context"
	"path/filepath"
	"strings"

	"github.com/nsdetach/nsdetach/internal/procfs"
	"github.com/nsdetach/nsdetach/mountns"
	"github.com/nsdetach/nsdetach/overlay2"
	"github.com/pkg/errors"
)

// Unmount unmounts target, a container's root filesystem mount point
// (DATA/rootfs/<snapshotter>/<id>), in the caller's namespace and removes
// the directory. When the kernel answers that it is not mounted here (a
// previous daemon in another namespace mounted it), the copies that other
// namespaces hold are detached there; when removing the directory fails
// with EBUSY (a kernel without detach-on-rmdir), so are the copies still
// holding it, and the rmdir is tried once more.
//
// A mount point that DetachStale of m found under a running container keeps
// its directory while that container runs: only the caller's own mount goes.
// WithRoot is required and target must be under it. The fast path, where the
// unmount and the rmdir succeed, scans nothing. The error is nil when the
// mount point is gone from every namespace.
func (m *Mountpoints) Unmount(ctx context.Context, target string, opts ...mountns.Option) error {
	return overlay2.UnmountMountpoint(ctx, target, m.IsLive(target), opts...)
}

// DetachStale detaches, in every other mount namespace, the copies of
// target's mount that a previous daemon made, before the caller mounts
// target again: two overlay mounts of one upper directory are undefined
// behaviour ("overlayfs: upperdir is in-use"), and a copy nobody uses keeps
// a removed snapshot's data alive. options are the mount options of what
// the caller is about to mount there (containerd's mount.Mount.Options): an
// overlay's upperdir= names the snapshot, whose copies are then found
// wherever they are mounted, also as a running container's root when no
// copy is left on target itself (a second restart).
//
// A running container's root filesystem (a namespace whose root is that
// mount) is never detached; DetachStale remembers target as live in m, so
// that m.Unmount keeps its directory until that container's processes are
// gone. It
// always scans. The error is nil when no copy remains but running
// containers' own roots.
func (m *Mountpoints) DetachStale(ctx context.Context, target string, options []string, opts ...mountns.Option) error {
	var rep mountns.Report
	var err error
	if upper := upperDir(options); upper != "" {
		var holders []mountns.Holder
		if holders, err = mountns.FindHolders(ctx, upper, opts...); err != nil {
			return err
		}
		rep, err = mountns.DetachHolders(ctx, target, holders, opts...)
	} else {
		rep, err = mountns.DetachAll(ctx, target, opts...)
	}
	var users []mountns.Namespace
	for _, ns := range rep.Namespaces {
		if !ns.Gone && runsOn(ns) {
			users = append(users, ns.Namespace)
		}
	}
	m.setLive(target, users)
	var de *mountns.DetachError
	if errors.As(err, &de) && !leftBesides(rep, users) {
		return nil
	}
	return err
}

// upperDir returns the upperdir= of overlay mount options, or "".
func upperDir(options []string) string {
	for _, o := range options {
		if dir, ok := strings.CutPrefix(o, "upperdir="); ok && filepath.IsAbs(dir) {
			return filepath.Clean(dir)
		}
	}
	return ""
}

// runsOn reports whether a namespace's root directory is one of the matched
// mounts: a container running on target's filesystem.
func runsOn(ns mountns.NamespaceReport) bool {
	for _, m := range ns.Result {
		if m.HolderRoot {
			return true
		}
	}
	return false
}

// leftBesides reports whether rep says that a copy remains in a namespace
// other than users, or that a namespace could not be read or entered.
func leftBesides(rep mountns.Report, users []mountns.Namespace) bool {
	for _, ns := range rep.Namespaces {
		switch {
		case ns.Gone:
			continue
		case ns.Error != "":
			return true
		case contains(users, ns.Inode):
			continue
		}
		for _, m := range ns.Result {
			if m.Remains || m.Action == mountns.Failed {
				return true
			}
		}
	}
	return false
}

func contains(nss []mountns.Namespace, inode uint64) bool {
	for _, ns := range nss {
		if ns.Inode == inode {
			return true
		}
	}
	return false
}

// IsLive reports whether a running container that DetachStale of m found
// on target still runs: one of the processes it saw in that container's
// namespace is still in it. It costs a readlink per recorded process, no
// scan; once none is left, target is forgotten.
func (m *Mountpoints) IsLive(target string) bool {
	if m == nil {
		return false
	}
	v, ok := m.live.Load(target)
	if !ok {
		return false
	}
	for _, ns := range v.([]mountns.Namespace) {
		for _, pid := range ns.PIDs {
			if inNamespace(pid, ns.Inode) {
				return true
			}
		}
	}
	m.live.Delete(target)
	return false
}

// inNamespace reports whether pid lives in the mount namespace with the
// given nsfs inode.
func inNamespace(pid int, inode uint64) bool {
	ino, err := procfs.MountNamespace(pid)
	return err == nil && ino == inode
}
