package daemon_test

import (
	"context"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/nsdetach/nsdetach/cmd/internal/daemon"
	"github.com/nsdetach/nsdetach/internal/nstest"
	"golang.org/x/sys/unix"
)

// snapshot is a containerd overlayfs snapshot outside the data root (the
// system containerd's /var/lib/containerd, as Docker's packages run it):
// one lower directory and an upper one.
type snapshot struct{ dir, lower, upper string }

func newSnapshot(t *testing.T, dir string) snapshot {
	t.Helper()
	s := snapshot{dir: dir, lower: filepath.Join(dir, "lower"), upper: filepath.Join(dir, "fs")}
	mkdirs(t, s.lower, s.upper)
	if err := os.WriteFile(filepath.Join(s.lower, "hello"), []byte("snapshot\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return s
}

// mountSnapshot mounts an overlay of s at target in the test's namespace, as
// dockerd mounts <root>/rootfs/overlayfs/<id> and containerd's shim the
// task's rootfs: each mount its own superblock over the same upper
// directory (its own work directory, which overlayfs keeps exclusive).
func mountSnapshot(t *testing.T, s snapshot, target string) {
	t.Helper()
	work, err := os.MkdirTemp(s.dir, "work")
	if err != nil {
		t.Fatal(err)
	}
	mkdirs(t, target)
	if err := unix.Mount("overlay", target, "overlay", 0, "lowerdir="+s.lower+",upperdir="+s.upper+",workdir="+work); err != nil {
		t.Skipf("overlayfs is not available here (mount: %v)", err)
	}
	t.Cleanup(func() {
		for nstest.IsMountPoint(target) {
			if err := unix.Unmount(target, unix.MNT_DETACH); err != nil {
				t.Errorf("cleanup: unmount %s: %v", target, err)
				return
			}
		}
	})
}

// leakRootfs mounts container id's rootfs (<root>/rootfs/overlayfs/<id>, a
// new snapshot under dir) as dockerd does, starts a holder that copies the
// namespace (dockerd #1's, kept by its shims) and unmounts the rootfs here, as
// dockerd #2 does in a namespace of its own.
func leakRootfs(t *testing.T, dir, root, id string) (old *nstest.Holder, s snapshot, rootfs string) {
	t.Helper()
	s = newSnapshot(t, filepath.Join(dir, "snapshots", id))
	rootfs = filepath.Join(root, "rootfs", "overlayfs", id)
	mountSnapshot(t, s, rootfs)
	old = nstest.StartHolder(t, nstest.HolderSpec{})
	forget(t, rootfs)
	return old, s, rootfs
}

// scanNamed runs FindLeaks on root and names the namespaces of holders.
func scanNamed(t *testing.T, root string, holders map[string]*nstest.Holder) (daemon.LeakScan, map[uint64]string) {
	t.Helper()
	scan, err := daemon.FindLeaks(context.Background(), root, 0)
	if err != nil {
		t.Fatal(err)
	}
	names := map[uint64]string{}
	for name, h := range holders {
		names[h.Namespace] = name
	}
	return scan, names
}

// TestFindLeaksSnapshotterRootfs: the containerd image store's container
// rootfs (<root>/rootfs/overlayfs/<id>) left in an old namespace after a
// dockerd restart is named by its container and classified: a live
// container's (its namespace runs on the snapshot, or the engine mounted the
// rootfs again) is pinned, a stopped or removed container's is stale.
func TestFindLeaksSnapshotterRootfs(t *testing.T) {
	nstest.RequireRoot(t)
	type wantLeak struct {
		holder, what string
		verdict      daemon.Verdict
		inUse        bool
		// why is a phrase the verdict's reason must contain.
		why string
	}
	cases := []struct {
		name  string
		build func(t *testing.T, dir, root string) map[string]*nstest.Holder
		want  []wantLeak
	}{
		{
			name: "removed container's rootfs, held by the old engine namespace",
			build: func(t *testing.T, dir, root string) map[string]*nstest.Holder {
				old, _, _ := leakRootfs(t, dir, root, "gone")
				return map[string]*nstest.Holder{"old": old}
			},
			want: []wantLeak{{"old", "rootfs:overlayfs/gone", daemon.Stale, false, "removed container gone"}},
		},
		{
			name: "stopped container's rootfs, held by the old engine namespace",
			build: func(t *testing.T, dir, root string) map[string]*nstest.Holder {
				mkdirs(t, filepath.Join(root, "containers", "stopped"))
				old, _, _ := leakRootfs(t, dir, root, "stopped")
				return map[string]*nstest.Holder{"old": old}
			},
			want: []wantLeak{{"old", "rootfs:overlayfs/stopped", daemon.Stale, false, "stopped container stopped"}},
		},
		{
			// The shim's rootfs mount (outside the data root) is the
			// container's "/"; it shares the snapshot's upper directory with
			// the old namespace's copy of dockerd's mount.
			name: "running container, its namespace on the same snapshot",
			build: func(t *testing.T, dir, root string) map[string]*nstest.Holder {
				s := newSnapshot(t, filepath.Join(dir, "snapshots", "run"))
				rootfs := filepath.Join(root, "rootfs", "overlayfs", "run")
				mountSnapshot(t, s, rootfs)
				old := nstest.StartHolder(t, nstest.HolderSpec{})
				task := filepath.Join(dir, "run", "containerd", "task", "run", "rootfs")
				mountSnapshot(t, s, task)
				ctr := nstest.StartHolder(t, nstest.HolderSpec{PivotRoot: task})
				forget(t, task)
				forget(t, rootfs)
				return map[string]*nstest.Holder{"old": old, "container": ctr}
			},
			want: []wantLeak{
				{"container", "root", daemon.Pinned, true, "root directory of a live container"},
				{"old", "rootfs:overlayfs/run", daemon.Pinned, false, "same layer as the root of the live container"},
			},
		},
		{
			// dockerd #2 restored the container and mounted its rootfs again
			// in its own namespace (here: the caller's): a new superblock at
			// the same place. The container's namespace is not in view.
			name: "live container's rootfs that the restarted engine mounted again",
			build: func(t *testing.T, dir, root string) map[string]*nstest.Holder {
				mkdirs(t, filepath.Join(root, "containers", "restored"))
				old, s, rootfs := leakRootfs(t, dir, root, "restored")
				mountSnapshot(t, s, rootfs)
				return map[string]*nstest.Holder{"old": old}
			},
			want: []wantLeak{{"old", "rootfs:overlayfs/restored", daemon.Pinned, false, "which the engine has mounted in the caller's namespace"}},
		},
		{
			name: "live container's rootfs that the engine, in a namespace of its own, mounted again",
			build: func(t *testing.T, dir, root string) map[string]*nstest.Holder {
				mkdirs(t, filepath.Join(root, "containers", "restored2"))
				old, s, rootfs := leakRootfs(t, dir, root, "restored2")
				mountSnapshot(t, s, rootfs)
				engine := nstest.StartHolder(t, nstest.HolderSpec{Comm: "dockerd"})
				forget(t, rootfs)
				return map[string]*nstest.Holder{"old": old, "engine": engine}
			},
			want: []wantLeak{
				{"engine", "rootfs:overlayfs/restored2", daemon.Pinned, true, "the container engine's own mount"},
				{"old", "rootfs:overlayfs/restored2", daemon.Pinned, false, "which the engine has mounted in the container engine's namespace"},
			},
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := nstest.Dir(t)
			root := filepath.Join(dir, "docker")
			mkdirs(t, root)
			scan, names := scanNamed(t, root, c.build(t, dir, root))
			var got []wantLeak
			for _, ns := range scan.Namespaces {
				name, ok := names[ns.Inode]
				if !ok {
					continue // another test's namespace on this machine
				}
				for _, l := range ns.Leaks {
					what := "view:" + l.Mountpoint
					switch {
					case l.HolderRoot:
						what = "root"
					case l.ContainerID != "":
						what = "rootfs:" + l.Snapshotter + "/" + l.ContainerID
					}
					got = append(got, wantLeak{name, what, l.Verdict, l.InUse, l.Why})
				}
			}
			sort.Slice(got, func(i, j int) bool { return got[i].holder+got[i].what < got[j].holder+got[j].what })
			if len(got) != len(c.want) {
				t.Fatalf("leaks\n got %+v\nwant %+v", got, c.want)
			}
			for i, w := range c.want {
				g := got[i]
				if g.holder != w.holder || g.what != w.what || g.verdict != w.verdict || g.inUse != w.inUse || !strings.Contains(g.why, w.why) {
					t.Errorf("leak %d: got %+v, want %+v (why containing %q)", i, g, w, w.why)
				}
			}
		})
	}
}
