package mountns_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/nsdetach/nsdetach/internal/nstest"
	"golang.org/x/sys/unix"
)

// held is a mount that only a holder's namespace still has.
type held struct {
	root   string // the allowed root (the "data root")
	target string // the mount point in the test's view
	view   string // the mount point in the holder's view
	other  string // an unrelated mount in the holder's view, which must survive
	holder *nstest.Holder
}

// fixture builds one kind of held mount under a fresh directory.
type fixture func(t *testing.T) held

// leak mounts fs on target in the test's namespace, starts a holder
// (copying it), then unmounts it here: the incident's leaked mount.
func leak(t *testing.T, root, target string, spec nstest.HolderSpec, overlay bool) *nstest.Holder {
	t.Helper()
	if overlay {
		nstest.MountOverlay(t, filepath.Dir(target))
	} else {
		nstest.MountTmpfs(t, target)
	}
	h := nstest.StartHolder(t, spec)
	if err := unix.Unmount(target, unix.MNT_DETACH); err != nil {
		t.Fatal(err)
	}
	return h
}

func mkdirs(t *testing.T, dirs ...string) {
	t.Helper()
	for _, d := range dirs {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
}

var fixtures = map[string]fixture{
	"overlay held by a shim": func(t *testing.T) held {
		root := filepath.Join(nstest.Dir(t), "docker")
		target := filepath.Join(root, "overlay2", "abc", "merged")
		other := filepath.Join(root, "other")
		mkdirs(t, other)
		h := leak(t, root, target, nstest.HolderSpec{Tmpfs: []string{other}}, true)
		return held{root: root, target: target, view: target, other: other, holder: h}
	},
	"tmpfs mounted only in the holder": func(t *testing.T) held {
		root := filepath.Join(nstest.Dir(t), "docker")
		target := filepath.Join(root, "containers", "c1", "shm")
		other := filepath.Join(root, "other")
		mkdirs(t, target, other)
		h := nstest.StartHolder(t, nstest.HolderSpec{Tmpfs: []string{target, other}})
		return held{root: root, target: target, view: target, other: other, holder: h}
	},
	"pivot_root holder": func(t *testing.T) held {
		return pivotRootHolder(t, nstest.Dir(t))
	},
	"pivot_root holder on a filesystem mounted below /": func(t *testing.T) held {
		fs := filepath.Join(nstest.Dir(t), "fs")
		nstest.MountTmpfs(t, fs)
		return pivotRootHolder(t, fs)
	},
	"chroot holder": func(t *testing.T) held {
		dir := nstest.Dir(t)
		jail := filepath.Join(dir, "jail")
		root := filepath.Join(jail, "data")
		target := filepath.Join(root, "mnt")
		mkdirs(t, filepath.Join(jail, "other"))
		h := leak(t, root, target, nstest.HolderSpec{Chroot: jail, Tmpfs: []string{filepath.Join(jail, "other")}}, false)
		return held{root: root, target: target, view: "/data/mnt", other: "/other", holder: h}
	},
	"name with a space and a tab": func(t *testing.T) held {
		root := filepath.Join(nstest.Dir(t), "docker")
		target := filepath.Join(root, "odd name\twith tab", "merged")
		other := filepath.Join(root, "other")
		mkdirs(t, other)
		h := leak(t, root, target, nstest.HolderSpec{Tmpfs: []string{other}}, true)
		return held{root: root, target: target, view: target, other: other, holder: h}
	},
}

// mountedInHolder reads the holder's own view (through its root).
func mountedInHolder(h *nstest.Holder, view string) bool {
	return nstest.IsMountedIn(h.PID, view)
}

// pivotRootHolder leaks a layer mount to a holder that pivot_roots into
// base/rootfs, with the data root inside it (base/rootfs/data) and a tmpfs
// of its own at /other.
func pivotRootHolder(t *testing.T, base string) held {
	newRoot := filepath.Join(base, "rootfs")
	root := filepath.Join(newRoot, "data")
	target := filepath.Join(root, "layer", "merged")
	mkdirs(t, filepath.Join(newRoot, "other"))
	h := leak(t, root, target, nstest.HolderSpec{PivotRoot: newRoot, Tmpfs: []string{filepath.Join(newRoot, "other")}}, true)
	return held{root: root, target: target, view: "/data/layer/merged", other: "/other", holder: h}
}
