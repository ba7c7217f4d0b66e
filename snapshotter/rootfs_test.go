package snapshotter_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/nsdetach/nsdetach/internal/nstest"
	"github.com/nsdetach/nsdetach/mountns"
	"github.com/nsdetach/nsdetach/snapshotter"
	"github.com/sirupsen/logrus"
	logtest "github.com/sirupsen/logrus/hooks/test"
	"golang.org/x/sys/unix"
)

// rootfs is a container's root filesystem as moby's containerd image store
// lays it out: an overlayfs snapshot of containerd's (upper fs/ and work/
// over a lower snapshot) mounted at <data>/rootfs/overlayfs/<container id>.
type rootfs struct {
	root    string   // <data>/rootfs/overlayfs, the allowed root
	target  string   // the mount point
	options []string // the snapshot's mount options, as containerd gives them
}

// mountRootfs mounts a snapshot on a container's rootfs mount point in the
// test's namespace; the test's own mount is removed when it ends.
func mountRootfs(t *testing.T) rootfs {
	t.Helper()
	dir := nstest.Dir(t)
	snapshots := filepath.Join(dir, "containerd", "io.containerd.snapshotter.v1.overlayfs", "snapshots")
	lower, upper, work := filepath.Join(snapshots, "1", "fs"), filepath.Join(snapshots, "2", "fs"), filepath.Join(snapshots, "2", "work")
	r := rootfs{root: filepath.Join(dir, "rootfs", "overlayfs")}
	r.target = filepath.Join(r.root, "5e1f0c")
	for _, d := range []string{lower, upper, work, r.target} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(lower, "hello"), []byte("image\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	r.options = []string{"index=off", "workdir=" + work, "upperdir=" + upper, "lowerdir=" + lower}
	if err := unix.Mount("overlay", r.target, "overlay", 0, strings.Join(r.options, ",")); err != nil {
		t.Skipf("overlayfs is not available here (mount: %v)", err)
	}
	t.Cleanup(func() {
		if err := unix.Unmount(r.target, unix.MNT_DETACH); err != nil && err != unix.EINVAL && err != unix.ENOENT {
			t.Errorf("unmounting %s: %v", r.target, err)
		}
	})
	return r
}

// restarted unmounts r in the test's namespace only, as a daemon restarted
// into a new mount namespace no longer has it.
func restarted(t *testing.T, r rootfs) {
	t.Helper()
	if err := unix.Unmount(r.target, unix.MNT_DETACH); err != nil {
		t.Fatal(err)
	}
}

func options(r rootfs, scans *nstest.Scans, log logrus.FieldLogger) []mountns.Option {
	return []mountns.Option{mountns.WithRoot(r.root), mountns.WithLister(scans), mountns.WithLogger(log)}
}

// copies lists the mounts of r's mount point left in any namespace.
func copies(r rootfs) []string { return nstest.MountsUnder(r.target) }

func TestUnmount(t *testing.T) {
	cases := []struct {
		name string
		// shim starts a process that keeps a copy of the mount in a
		// namespace of its own (a containerd shim of the previous daemon)
		shim bool
		// gone: the daemon restarted, the mount is not in its namespace
		gone  bool
		scans int
	}{
		{"mounted here only: fast path", false, false, 0},
		{"mounted here and in a shim's namespace (restore)", true, false, 0},
		{"only in a shim's namespace (removal after a restart)", true, true, 1},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := mountRootfs(t)
			if tc.shim {
				nstest.StartHolder(t, nstest.HolderSpec{Extra: 1})
			}
			if tc.gone {
				restarted(t, r)
			}
			var mountpoints snapshotter.Mountpoints // the mounter's memory of live mount points
			scans := &nstest.Scans{}
			log, _ := logtest.NewNullLogger()
			if err := mountpoints.Unmount(context.Background(), r.target, options(r, scans, log)...); err != nil {
				t.Fatalf("Unmount: %v", err)
			}
			if _, err := os.Lstat(r.target); !os.IsNotExist(err) {
				t.Errorf("mount point %s still exists (lstat: %v)", r.target, err)
			}
			if c := copies(r); len(c) > 0 {
				t.Errorf("copies of the mount left: %v", c)
			}
			if got := scans.Count(); got != tc.scans {
				t.Errorf("scans = %d, want %d", got, tc.scans)
			}
		})
	}
}

func TestDetachStale(t *testing.T) {
	cases := []struct {
		name string
		shim bool // the previous daemon's namespace still holds the mount
		// container runs a process whose root is the mount, in a namespace
		// of its own (pivot_root), as a container restored with live-restore
		container bool
		// withOptions passes the snapshot's mount options to DetachStale
		withOptions bool
		live        bool
	}{
		{"shim's copy, no container", true, false, true, false},
		{"shim's copy and a running container", true, true, true, true},
		{"shim's copy and a running container, options unknown", true, true, false, true},
		{"a running container only (second restart)", false, true, true, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := mountRootfs(t)
			var ctr *nstest.Holder
			if tc.container {
				ctr = nstest.StartHolder(t, nstest.HolderSpec{PivotRoot: r.target})
			}
			if tc.shim {
				nstest.StartHolder(t, nstest.HolderSpec{Extra: 1})
			}
			restarted(t, r)
			var mountpoints snapshotter.Mountpoints // the mounter's memory of live mount points
			scans := &nstest.Scans{}
			log, _ := logtest.NewNullLogger()
			opts := options(r, scans, log)
			var mountOptions []string
			if tc.withOptions {
				mountOptions = r.options
			}
			if err := mountpoints.DetachStale(context.Background(), r.target, mountOptions, opts...); err != nil {
				t.Fatalf("DetachStale: %v", err)
			}
			if c := copies(r); len(c) > 0 {
				t.Errorf("copies on the mount point left: %v", c)
			}
			if got := mountpoints.IsLive(r.target); got != tc.live {
				t.Errorf("IsLive = %v, want %v", got, tc.live)
			}
			// What one mounter found is its own: another mounter's
			// Mountpoints, and a nil one, do not see the mount point as live.
			var other snapshotter.Mountpoints
			if other.IsLive(r.target) || (*snapshotter.Mountpoints)(nil).IsLive(r.target) {
				t.Error("another Mountpoints sees the mount point as live")
			}
			if ctr != nil {
				// The container keeps running on its root filesystem.
				if b, err := os.ReadFile("/proc/" + strconv.Itoa(ctr.PID) + "/root/hello"); err != nil || string(b) != "image\n" {
					t.Errorf("the container's root lost its filesystem: %q, %v", b, err)
				}
				// A live mount point outside the given root is refused, not
				// unmounted.
				var outside *mountns.OutsideRootError
				if err := mountpoints.Unmount(context.Background(), r.target, mountns.WithRoot(nstest.Dir(t))); !errors.As(err, &outside) {
					t.Errorf("Unmount outside the root: %v, want an *OutsideRootError", err)
				}
				// Its mount point stays while it runs: runc exec works in it.
				if err := mountpoints.Unmount(context.Background(), r.target, opts...); err != nil {
					t.Fatalf("Unmount while the container runs: %v", err)
				}
				if _, err := os.Lstat(r.target); err != nil {
					t.Errorf("Unmount removed the mount point of a running container: %v", err)
				}
				if err := ctr.Stop(); err != nil {
					t.Fatal(err)
				}
				if mountpoints.IsLive(r.target) {
					t.Error("IsLive after the container stopped")
				}
			}
			if err := mountpoints.Unmount(context.Background(), r.target, opts...); err != nil {
				t.Fatalf("Unmount: %v", err)
			}
			if _, err := os.Lstat(r.target); !os.IsNotExist(err) {
				t.Errorf("mount point %s still exists (lstat: %v)", r.target, err)
			}
		})
	}
}
