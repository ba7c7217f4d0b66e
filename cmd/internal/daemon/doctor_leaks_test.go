package daemon_test

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/moby/sys/mountinfo"
	"github.com/nsdetach/nsdetach/cmd/internal/daemon"
	"github.com/nsdetach/nsdetach/internal/nstest"
	"github.com/nsdetach/nsdetach/mountns"
	"golang.org/x/sys/unix"
)

// layer mounts an overlay2-style layer <root>/overlay2/<id> in the test's
// namespace.
func layer(t *testing.T, root, id string) nstest.Overlay {
	t.Helper()
	return nstest.MountOverlay(t, filepath.Join(root, "overlay2", id))
}

// forget unmounts dir in the test's namespace only: copies elsewhere stay,
// as after a daemon restart into a new namespace.
func forget(t *testing.T, dir string) {
	t.Helper()
	if err := unix.Unmount(dir, unix.MNT_DETACH); err != nil {
		t.Fatal(err)
	}
}

func mkdirs(t *testing.T, dirs ...string) {
	t.Helper()
	for _, d := range dirs {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
}

// want is one expected leak: where (holder name), which mount (suffix of
// its host path or, for a root, the layer id), and the verdict.
type want struct {
	holder  string
	what    string
	verdict daemon.Verdict
	inUse   bool
}

func TestFindLeaks(t *testing.T) {
	nstest.RequireRoot(t)
	cases := []struct {
		name string
		// build makes the fixture under root and returns named holders.
		build func(t *testing.T, root string) map[string]*nstest.Holder
		want  []want
	}{
		{
			name: "a replica of a mount the caller still has is not a leak",
			build: func(t *testing.T, root string) map[string]*nstest.Holder {
				layer(t, root, "l1")
				return map[string]*nstest.Holder{"bystander": nstest.StartHolder(t, nstest.HolderSpec{})}
			},
			want: []want{{"bystander", "layer:l1", daemon.Pinned, true}},
		},
		{
			name: "layer of a removed container, held by an old daemon namespace",
			build: func(t *testing.T, root string) map[string]*nstest.Holder {
				o := layer(t, root, "dead")
				h := nstest.StartHolder(t, nstest.HolderSpec{Extra: 1})
				forget(t, o.Merged)
				return map[string]*nstest.Holder{"old": h}
			},
			want: []want{{"old", "layer:dead", daemon.Stale, false}},
		},
		{
			name: "running container after a daemon restart: the old namespace's copy",
			build: func(t *testing.T, root string) map[string]*nstest.Holder {
				o := layer(t, root, "live")
				old := nstest.StartHolder(t, nstest.HolderSpec{})
				ctr := nstest.StartHolder(t, nstest.HolderSpec{PivotRoot: o.Merged})
				forget(t, o.Merged)
				return map[string]*nstest.Holder{"old": old, "container": ctr}
			},
			want: []want{
				{"container", "root:live", daemon.Pinned, true},
				{"old", "layer:live", daemon.Pinned, false},
			},
		},
		{
			name: "running container, daemon still has its layer",
			build: func(t *testing.T, root string) map[string]*nstest.Holder {
				o := layer(t, root, "run")
				shm := filepath.Join(o.Merged, "dev", "shm")
				mkdirs(t, shm)
				ctr := nstest.StartHolder(t, nstest.HolderSpec{Tmpfs: []string{shm}, PivotRoot: o.Merged})
				copy := nstest.StartHolder(t, nstest.HolderSpec{})
				return map[string]*nstest.Holder{"container": ctr, "replica": copy}
			},
			want: []want{
				{"container", "/overlay2/run/merged/dev/shm", daemon.Pinned, true},
				{"container", "root:run", daemon.Pinned, true},
				{"replica", "layer:run", daemon.Pinned, true},
			},
		},
		{
			name: "a running container's shm, held by an old namespace",
			build: func(t *testing.T, root string) map[string]*nstest.Holder {
				o := layer(t, root, "c2")
				shm := filepath.Join(root, "containers", "c2", "mounts", "shm")
				nstest.MountTmpfs(t, shm)
				inside := filepath.Join(o.Merged, "dev", "shm")
				mkdirs(t, inside)
				if err := unix.Mount(shm, inside, "", unix.MS_BIND, ""); err != nil {
					t.Fatal(err)
				}
				old := nstest.StartHolder(t, nstest.HolderSpec{})
				ctr := nstest.StartHolder(t, nstest.HolderSpec{PivotRoot: o.Merged})
				forget(t, inside)
				forget(t, shm)
				return map[string]*nstest.Holder{"old": old, "container": ctr}
			},
			want: []want{
				{"container", "/overlay2/c2/merged/dev/shm", daemon.Pinned, true},
				{"container", "root:c2", daemon.Pinned, true},
				{"old", "/containers/c2/mounts/shm", daemon.Pinned, false},
				{"old", "/overlay2/c2/merged/dev/shm", daemon.Pinned, false},
				{"old", "layer:c2", daemon.Pinned, true},
			},
		},
		{
			// docker run --ipc shareable, then a daemon restart: the old
			// engine namespace keeps DATA/containers/ID/mounts/shm, and the
			// container's /dev/shm, a bind of the same tmpfs made inside its
			// own namespace, lies outside the data root. Neither the caller
			// nor anything under the data root shows that the tmpfs is in use.
			name: "a running shareable-ipc container's shm after a restart",
			build: func(t *testing.T, root string) map[string]*nstest.Holder {
				o := layer(t, root, "c4")
				shm := filepath.Join(root, "containers", "c4", "mounts", "shm")
				nstest.MountTmpfs(t, shm)
				old := nstest.StartHolder(t, nstest.HolderSpec{})
				inside := filepath.Join(o.Merged, "dev", "shm")
				mkdirs(t, inside)
				if err := unix.Mount(shm, inside, "", unix.MS_BIND, ""); err != nil {
					t.Fatal(err)
				}
				ctr := nstest.StartHolder(t, nstest.HolderSpec{PivotRoot: o.Merged})
				forget(t, inside)
				forget(t, shm)
				forget(t, o.Merged)
				return map[string]*nstest.Holder{"old": old, "container": ctr}
			},
			want: []want{
				{"container", "root:c4", daemon.Pinned, true},
				{"old", "/containers/c4/mounts/shm", daemon.Pinned, false},
				{"old", "layer:c4", daemon.Pinned, false},
			},
		},
		{
			name: "removed container's shm",
			build: func(t *testing.T, root string) map[string]*nstest.Holder {
				shm := filepath.Join(root, "containers", "c3", "mounts", "shm")
				nstest.MountTmpfs(t, shm)
				old := nstest.StartHolder(t, nstest.HolderSpec{})
				forget(t, shm)
				return map[string]*nstest.Holder{"old": old}
			},
			want: []want{{"old", "/containers/c3/mounts/shm", daemon.Stale, false}},
		},
		{
			name: "the engine's own namespace",
			build: func(t *testing.T, root string) map[string]*nstest.Holder {
				mnt := filepath.Join(root, "overlay2", "e1", "merged")
				mkdirs(t, mnt)
				return map[string]*nstest.Holder{"engine": nstest.StartHolder(t, nstest.HolderSpec{Comm: "dockerd", Tmpfs: []string{mnt}})}
			},
			want: []want{{"engine", "layer:e1", daemon.Pinned, true}},
		},
		{
			// Holder.Commands names the first two processes only, and pids
			// wrap: the engine can come after its shims.
			name: "the engine's own namespace, the engine not among its first processes",
			build: func(t *testing.T, root string) map[string]*nstest.Holder {
				mnt := filepath.Join(root, "overlay2", "e2", "merged")
				mkdirs(t, mnt)
				h := nstest.StartHolder(t, nstest.HolderSpec{Extra: 2, Tmpfs: []string{mnt}})
				runNamed(t, h.PID, "dockerd")
				return map[string]*nstest.Holder{"engine": h}
			},
			want: []want{{"engine", "layer:e2", daemon.Pinned, true}},
		},
		{
			name: "the data root's own mount is not a leak",
			build: func(t *testing.T, root string) map[string]*nstest.Holder {
				nstest.MountTmpfs(t, root)
				h := nstest.StartHolder(t, nstest.HolderSpec{})
				forget(t, root)
				return map[string]*nstest.Holder{"host-copy": h}
			},
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			root := filepath.Join(nstest.Dir(t), "docker")
			mkdirs(t, root)
			holders := c.build(t, root)
			scan, names := scanNamed(t, root, holders)
			var got []want
			for _, ns := range scan.Namespaces {
				name, ok := names[ns.Inode]
				if !ok {
					continue // another test suite's namespace on this machine
				}
				if len(ns.Processes) == 0 || ns.Processes[0].Command == "" || ns.Processes[0].Started.IsZero() {
					t.Errorf("%s: processes not described: %+v", name, ns.Processes)
				}
				for _, l := range ns.Leaks {
					what := strings.TrimPrefix(l.HostPath, root)
					switch {
					case l.HolderRoot:
						what = "root:" + l.LayerID
					case l.LayerID != "":
						what = "layer:" + l.LayerID
					case l.HostPath == "":
						what = "view:" + l.Mountpoint
					}
					got = append(got, want{name, what, l.Verdict, l.InUse})
				}
			}
			sort.Slice(got, func(i, j int) bool { return got[i].holder+got[i].what < got[j].holder+got[j].what })
			if len(got) != len(c.want) {
				t.Fatalf("leaks\n got %+v\nwant %+v", got, c.want)
			}
			for i := range got {
				if got[i] != c.want[i] {
					t.Errorf("leak %d: got %+v, want %+v", i, got[i], c.want[i])
				}
			}
			wantLeaked := 0
			for _, w := range c.want {
				if !w.inUse {
					wantLeaked++
				}
			}
			if scan.Leaked() != wantLeaked {
				t.Errorf("Leaked() = %d, want %d", scan.Leaked(), wantLeaked)
			}
			if scan.Scanned < len(holders)+1 {
				t.Errorf("Scanned = %d, want at least %d", scan.Scanned, len(holders)+1)
			}
			// Detach what a --stale-only pass would, and check the rest stays.
			for _, h := range scan.Holders(func(l daemon.Leak) bool { return l.Verdict == daemon.Stale }) {
				for _, m := range h.Mounts {
					if m.HolderRoot {
						t.Errorf("Holders offered a namespace's root: %+v", m)
					}
				}
			}
		})
	}
}

func TestFindLeaksBadRoot(t *testing.T) {
	nstest.RequireRoot(t)
	dir := nstest.Dir(t)
	file := filepath.Join(dir, "file")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, root := range []string{filepath.Join(dir, "missing"), file, "relative/path", "", "/"} {
		_, err := daemon.FindLeaks(context.Background(), root, 0)
		var ie *daemon.InputError
		if !errors.As(err, &ie) || ie.What != "--root" {
			t.Errorf("FindLeaks(%q) = %v, want an InputError for --root", root, err)
		}
		if missing := root == filepath.Join(dir, "missing"); errors.Is(err, fs.ErrNotExist) != missing {
			t.Errorf("FindLeaks(%q) = %v: errors.Is(err, fs.ErrNotExist) = %v, want %v", root, err, !missing, missing)
		}
	}
}

// TestNamespaceTableExitedProcess: a container whose last process exited
// after the scan (a zombie not yet reaped: its mountinfo answers EINVAL, its
// namespace link ENOENT) holds nothing any more; that is no error.
func TestNamespaceTableExitedProcess(t *testing.T) {
	nstest.RequireRoot(t)
	cmd := exec.Command("cat")
	cmd.SysProcAttr = &syscall.SysProcAttr{Unshareflags: syscall.CLONE_NEWNS}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { stdin.Close(); cmd.Wait() })
	pid := cmd.Process.Pid
	ino, err := nstest.NamespaceOf(pid)
	if err != nil {
		t.Fatal(err)
	}
	stdin.Close()
	// Wait for the exit without reaping: the pid stays, a zombie.
	var info unix.Siginfo
	if err := unix.Waitid(unix.P_PID, pid, &info, unix.WEXITED|unix.WNOWAIT, nil); err != nil {
		t.Fatal(err)
	}
	h := mountns.Holder{Namespace: mountns.Namespace{Inode: ino, PIDs: []int{pid}}, ViewPID: pid}
	table, err := daemon.NamespaceTable(h)
	if err != nil || table != nil {
		t.Fatalf("NamespaceTable of an exited process = %d mounts, %v; want nothing and no error", len(table), err)
	}
}

// runNamed runs a process named name (/proc/PID/comm) in pid's mount
// namespace until the test ends; it is killed by its pid.
func runNamed(t *testing.T, pid int, name string) {
	t.Helper()
	sleep, err := exec.LookPath("sleep")
	if err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(t.TempDir(), name)
	if err := os.Symlink(sleep, link); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("nsenter", "-t", strconv.Itoa(pid), "-m", "--", link, "infinity")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	for deadline := time.Now().Add(10 * time.Second); ; {
		b, err := os.ReadFile("/proc/" + strconv.Itoa(cmd.Process.Pid) + "/comm")
		if err != nil {
			t.Fatal(err)
		}
		if strings.TrimSpace(string(b)) == name {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("nsenter never ran %s (it is %q)", name, strings.TrimSpace(string(b)))
		}
		runtime.Gosched() // nsenter has not exec'd yet
	}
}

// TestCallerInAContainer: nsdetach run in a container of the engine (the
// DaemonSet's pod) counts every copy of its own root filesystem as in use,
// whatever namespace holds it and whether or not the engine is recognised;
// a caller whose root is an overlay that is no layer of the data root (a
// host booted from one) gets no such rule.
func TestCallerInAContainer(t *testing.T) {
	const root = "/var/lib/docker"
	podUpper := root + "/overlay2/pod/diff"
	overlay := func(major, minor int, mp, upper string) mountns.Mount {
		return mountns.Mount{ID: minor, Major: major, Minor: minor, Mountpoint: mp, HostPath: mp, FSType: "overlay", UpperDir: upper, MatchedBy: "path"}
	}
	holder := mountns.Holder{
		Namespace: mountns.Namespace{Inode: 4026532178},
		Mounts: []mountns.Mount{
			overlay(0, 77, root+"/overlay2/pod/merged", podUpper),                    // the engine's mount of the pod's root
			overlay(0, 78, root+"/overlay2/pod/merged-again", podUpper),              // the same layer mounted again
			overlay(0, 79, root+"/overlay2/gone/merged", root+"/overlay2/gone/diff"), // a removed container's layer
		},
	}
	cases := []struct {
		name   string
		caller []*mountinfo.Info
		want   []string // per mount: verdict, and "in-use" when in use
	}{
		{"in a container of the engine", []*mountinfo.Info{{ID: 1, Major: 0, Minor: 77, Root: "/", Mountpoint: "/", FSType: "overlay",
			VFSOptions: "rw,lowerdir=" + root + "/overlay2/l/X,upperdir=" + podUpper + ",workdir=" + root + "/overlay2/pod/work"}},
			[]string{"pinned in-use", "pinned in-use", "stale"}},
		{"on a host booted from an overlay", []*mountinfo.Info{{ID: 1, Major: 0, Minor: 77, Root: "/", Mountpoint: "/", FSType: "overlay",
			VFSOptions: "rw,lowerdir=/ro,upperdir=/rw/upper,workdir=/rw/work"}},
			[]string{"pinned", "stale", "stale"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			scan, err := daemon.ClassifyAs(root, []mountns.Holder{holder}, c.caller)
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, ns := range scan.Namespaces {
				for _, l := range ns.Leaks {
					v := string(l.Verdict)
					if l.InUse {
						v += " in-use"
					}
					got = append(got, v)
				}
			}
			if strings.Join(got, ",") != strings.Join(c.want, ",") {
				t.Errorf("verdicts %v, want %v", got, c.want)
			}
		})
	}
}
