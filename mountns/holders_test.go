package mountns_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/nsdetach/nsdetach/internal/nstest"
	"github.com/nsdetach/nsdetach/mountns"
	"github.com/nsdetach/nsdetach/overlay2"
)

func TestFindHolders(t *testing.T) {
	nstest.RequireRoot(t)
	for name, build := range fixtures {
		t.Run(name, func(t *testing.T) {
			f := build(t)
			if nstest.IsMountPoint(f.target) {
				t.Fatalf("fixture: %s is still mounted in the test's namespace", f.target)
			}
			holders, err := mountns.FindHolders(context.Background(), f.target)
			if err != nil {
				t.Fatal(err)
			}
			if len(holders) != 1 {
				t.Fatalf("want exactly the holder's namespace, got %d holders: %+v", len(holders), holders)
			}
			h := holders[0]
			if h.Inode != f.holder.Namespace || !contains(h.PIDs, f.holder.PID) {
				t.Errorf("holder = mnt:[%d] pids %v, want mnt:[%d] with pid %d", h.Inode, h.PIDs, f.holder.Namespace, f.holder.PID)
			}
			if len(h.Mounts) != 1 || h.Mounts[0].Mountpoint != f.view || h.Mounts[0].HostPath != f.target {
				t.Errorf("mounts = %+v, want one at %q (host %q)", h.Mounts, f.view, f.target)
			}
		})
	}
}

func TestFindHoldersMountedNowhere(t *testing.T) {
	nstest.RequireRoot(t)
	dir := filepath.Join(nstest.Dir(t), "plain")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	nstest.StartHolder(t, nstest.HolderSpec{})
	holders, err := mountns.FindHolders(context.Background(), dir)
	if err != nil || len(holders) != 0 {
		t.Fatalf("FindHolders(%s) = %+v, %v; want none, nil", dir, holders, err)
	}
}

func TestFindHoldersFindsOverlayByUpperdir(t *testing.T) {
	nstest.RequireRoot(t)
	dir := nstest.Dir(t)
	layer := filepath.Join(dir, "docker", "overlay2", "abc")
	o := nstest.MountOverlay(t, layer)
	// The holder pivots into a root of its own that is not the layer's
	// parent, so only the overlay options tie its mount to the layer.
	newRoot := filepath.Join(dir, "rootfs")
	mkdirs(t, filepath.Join(newRoot, "mnt"))
	if err := bind(o.Merged, filepath.Join(newRoot, "mnt")); err != nil {
		t.Fatal(err)
	}
	h := nstest.StartHolder(t, nstest.HolderSpec{PivotRoot: newRoot})
	for _, p := range []string{filepath.Join(newRoot, "mnt"), o.Merged} {
		if err := unmount(p); err != nil {
			t.Fatal(err)
		}
	}
	// Nothing at o.Merged shows the copy: the layout (overlay2's, a layer's
	// merged directory with its diff beside it) names its upper directory.
	holders, err := mountns.FindHolders(context.Background(), o.Merged, overlay2.Layout())
	if err != nil {
		t.Fatal(err)
	}
	if len(holders) != 1 || holders[0].Inode != h.Namespace {
		t.Fatalf("holders = %+v, want the pivoted holder", holders)
	}
	m := holders[0].Mounts[0]
	if m.Mountpoint != "/mnt" || m.UpperDir != o.Upper {
		t.Errorf("mount = %+v, want /mnt with upperdir %s", m, o.Upper)
	}
}

func contains(xs []int, x int) bool {
	for _, v := range xs {
		if v == x {
			return true
		}
	}
	return false
}
