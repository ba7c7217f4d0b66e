package daemon_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"

	"github.com/nsdetach/nsdetach/cmd/internal/daemon"
	"github.com/nsdetach/nsdetach/internal/nstest"
	"golang.org/x/sys/unix"
)

// testContainerdNamespace keeps the fake shims of these tests apart from the
// real ones of any engine running on the machine.
var testContainerdNamespace = "nsdetach-test-" + strconv.Itoa(os.Getpid())

// testShim is the shim binary of these tests: the fake shims are this test
// binary under another name, as nstest starts them.
func testShim(t *testing.T) string {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	return exe
}

// startShim starts a process that looks like a containerd shim of
// containerd namespace ns (its command name and -namespace flag) in a mount
// namespace of its own, with a tmpfs on each of mounts there.
func startShim(t *testing.T, ns string, mounts ...string) *nstest.Holder {
	t.Helper()
	mkdirs(t, mounts...)
	return nstest.StartHolder(t, nstest.HolderSpec{
		Comm:  "containerd-shim-runc-v2",
		Args:  []string{"-namespace", ns, "-id", "c" + strconv.Itoa(len(mounts)), "-address", "/run/containerd/containerd.sock"},
		Tmpfs: mounts,
	})
}

func TestDecideRejoin(t *testing.T) {
	nstest.RequireRoot(t)
	type fixture struct {
		dir, root string
		// merged returns a layer's merged directory under the root.
		merged func(id string) string
	}
	cases := []struct {
		name string
		// build starts the fixture's processes and returns the holder
		// whose namespace is the expected target (nil: no rejoin), and the
		// config to decide with.
		build func(t *testing.T, f fixture, cfg *daemon.RejoinConfig) *nstest.Holder
		// candidates is how many candidates are expected.
		candidates int
		// says is part of the reason.
		says string
		// skip, when set, is what the reason of one of the skipped
		// namespaces says: each a rule that refused it.
		skip []string
	}{
		{
			name: "no shim: first start",
			build: func(t *testing.T, f fixture, cfg *daemon.RejoinConfig) *nstest.Holder {
				return nil
			},
			says: "nothing to rejoin",
		},
		{
			name: "one namespace with the engine's shims and mounts below the root",
			build: func(t *testing.T, f fixture, cfg *daemon.RejoinConfig) *nstest.Holder {
				return startShim(t, testContainerdNamespace, f.merged("l1"), f.merged("l2"))
			},
			candidates: 1,
			says:       "rejoining mnt:",
		},
		{
			name: "a container's namespace and another engine's shims are no candidates",
			build: func(t *testing.T, f fixture, cfg *daemon.RejoinConfig) *nstest.Holder {
				mkdirs(t, f.merged("c1"))
				nstest.StartHolder(t, nstest.HolderSpec{Tmpfs: []string{f.merged("c1")}})
				startShim(t, "k8s.io", f.merged("k1"))
				return startShim(t, testContainerdNamespace, f.merged("l1"))
			},
			candidates: 1,
			says:       "rejoining mnt:",
		},
		{
			name: "two candidates: no guess",
			build: func(t *testing.T, f fixture, cfg *daemon.RejoinConfig) *nstest.Holder {
				startShim(t, testContainerdNamespace, f.merged("l1"))
				startShim(t, testContainerdNamespace, f.merged("l2"))
				return nil
			},
			candidates: 2,
			says:       "not rejoining: 2 mount namespaces",
		},
		{
			name: "the only candidate is the host's namespace",
			build: func(t *testing.T, f fixture, cfg *daemon.RejoinConfig) *nstest.Holder {
				h := startShim(t, testContainerdNamespace, f.merged("l1"))
				cfg.HostPID = h.PID
				return nil
			},
			says: "nothing to rejoin",
			skip: []string{"the host's initial mount namespace"},
		},
		{
			name: "a namespace another user namespace owns is never joined",
			build: func(t *testing.T, f fixture, cfg *daemon.RejoinConfig) *nstest.Holder {
				mkdirs(t, f.merged("l1"))
				nstest.StartHolder(t, nstest.HolderSpec{UserNS: true, Comm: "containerd-shim-runc-v2",
					Args: []string{"-namespace", testContainerdNamespace}, Tmpfs: []string{f.merged("l1")}})
				return nil
			},
			says: "nothing to rejoin",
			skip: []string{"owned by user namespace"},
		},
		{
			name: "the shims' namespace holds no mount below the root",
			build: func(t *testing.T, f fixture, cfg *daemon.RejoinConfig) *nstest.Holder {
				startShim(t, testContainerdNamespace, filepath.Join(f.dir, "elsewhere"))
				return nil
			},
			says: "nothing to rejoin",
			skip: []string{"holds no mount below"},
		},
		{
			name: "the data root's own mount does not count",
			build: func(t *testing.T, f fixture, cfg *daemon.RejoinConfig) *nstest.Holder {
				startShim(t, testContainerdNamespace, f.root)
				return nil
			},
			says: "nothing to rejoin",
			skip: []string{"holds no mount below"},
		},
		{
			name: "the data root does not exist yet",
			build: func(t *testing.T, f fixture, cfg *daemon.RejoinConfig) *nstest.Holder {
				startShim(t, testContainerdNamespace, filepath.Join(f.dir, "elsewhere"))
				cfg.DataRoot = filepath.Join(f.dir, "new")
				return nil
			},
			says: "does not exist",
		},
		{
			name: "a process named and flagged like a shim that runs another binary is no shim",
			build: func(t *testing.T, f fixture, cfg *daemon.RejoinConfig) *nstest.Holder {
				startShim(t, testContainerdNamespace, f.merged("l1"))
				cfg.ShimBinaries = []string{"/bin/true"}
				return nil
			},
			says: "nothing to rejoin",
			skip: []string{"which is none of the shim binaries of this view (/bin/true)"},
		},
		{
			name: "a shim in another pid namespace is no shim of the engine",
			build: func(t *testing.T, f fixture, cfg *daemon.RejoinConfig) *nstest.Holder {
				mkdirs(t, f.merged("l1"))
				nstest.StartHolder(t, nstest.HolderSpec{PidNS: true, Comm: "containerd-shim-runc-v2",
					Args: []string{"-namespace", testContainerdNamespace}, Tmpfs: []string{f.merged("l1")}})
				return nil
			},
			says: "nothing to rejoin",
			skip: []string{"not this process's pid:["},
		},
		{
			name: "a shim chrooted elsewhere is no shim of the engine, its namespace a container's",
			build: func(t *testing.T, f fixture, cfg *daemon.RejoinConfig) *nstest.Holder {
				// Chrooted above the data root, so that its mounts below
				// it stay in its view.
				mkdirs(t, f.merged("l1"))
				nstest.StartHolder(t, nstest.HolderSpec{Chroot: f.dir, Comm: "containerd-shim-runc-v2",
					Args: []string{"-namespace", testContainerdNamespace}, Tmpfs: []string{f.merged("l1")}})
				return nil
			},
			says: "nothing to rejoin",
			skip: []string{`which is not the "/" of its mount table (chrooted)`, ", not this process's /: a container's namespace"},
		},
		{
			name: "a namespace whose root is a layer below the data root is a container's, whatever its processes run",
			build: func(t *testing.T, f fixture, cfg *daemon.RejoinConfig) *nstest.Holder {
				startContainer(t, f.root, "c1", testContainerdNamespace, map[string]string{})
				return nil
			},
			says: "nothing to rejoin",
			skip: []string{"(overlay) below ", "not this process's / ("},
		},
		{
			name: "a namespace whose root directory lies below the data root is a container's",
			build: func(t *testing.T, f fixture, cfg *daemon.RejoinConfig) *nstest.Holder {
				rootfs := filepath.Join(f.root, "containers", "c1", "rootfs")
				mkdirs(t, rootfs)
				nstest.StartHolder(t, nstest.HolderSpec{PivotRoot: rootfs, Comm: "containerd-shim-runc-v2",
					Args: []string{"-namespace", testContainerdNamespace}})
				return nil
			},
			says: "nothing to rejoin",
			skip: []string{"its root directory lies below "},
		},
		{
			name: "data root and containerd namespace from dockerd's command line",
			build: func(t *testing.T, f fixture, cfg *daemon.RejoinConfig) *nstest.Holder {
				cfg.Args = []string{"dockerd", "--data-root", f.root, "--containerd-namespace", "engine2-" + testContainerdNamespace}
				cfg.DataRoot, cfg.ContainerdNamespace = "", ""
				startShim(t, testContainerdNamespace, f.merged("l1"))
				return startShim(t, "engine2-"+testContainerdNamespace, f.merged("l2"))
			},
			candidates: 1,
			says:       "containerd shims of namespace engine2-",
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := nstest.Dir(t)
			f := fixture{dir: dir, root: filepath.Join(dir, "docker")}
			f.merged = func(id string) string { return filepath.Join(f.root, "overlay2", id, "merged") }
			mkdirs(t, f.root)
			cfg := daemon.RejoinConfig{Args: []string{"dockerd"}, DataRoot: f.root, ContainerdNamespace: testContainerdNamespace,
				ShimBinaries: []string{testShim(t)}}
			want := c.build(t, f, &cfg)
			d, err := daemon.DecideRejoin(context.Background(), cfg)
			if err != nil {
				t.Fatal(err)
			}
			if len(d.Candidates) != c.candidates {
				t.Errorf("%d candidates, want %d: %+v", len(d.Candidates), c.candidates, d.Candidates)
			}
			if d.Rejoin != (want != nil) {
				t.Errorf("rejoin %v, want %v: %s", d.Rejoin, want != nil, d.Reason)
			}
			if want != nil && (d.Target == nil || d.Target.Inode != want.Namespace || len(d.Target.Shims) != 1 || d.Target.Shims[0] != want.PID) {
				t.Errorf("target %+v, want mnt:[%d] with shim %d", d.Target, want.Namespace, want.PID)
			}
			if !strings.Contains(d.Reason, c.says) || strings.Contains(d.Reason, "\n") {
				t.Errorf("reason %q does not say %q in one line", d.Reason, c.says)
			}
			for _, skip := range c.skip {
				found := false
				for _, s := range d.Skipped {
					found = found || strings.Contains(s.Skipped, skip)
				}
				if !found || !strings.Contains(d.Reason, skip) {
					t.Errorf("no namespace skipped as %q: %+v; reason %q", skip, d.Skipped, d.Reason)
				}
			}
			if d.Rejoin && (d.Target.Inode == d.Own || d.Target.Inode == d.Host) {
				t.Errorf("own mnt:[%d], host mnt:[%d], target %+v", d.Own, d.Host, d.Target)
			}
		})
	}
}

func TestDecideRejoinHostUnreadable(t *testing.T) {
	nstest.RequireRoot(t)
	root := filepath.Join(nstest.Dir(t), "docker")
	h := startShim(t, testContainerdNamespace, filepath.Join(root, "overlay2", "l1", "merged"))
	d, err := daemon.DecideRejoin(context.Background(), daemon.RejoinConfig{
		Args: []string{"dockerd"}, DataRoot: root, ContainerdNamespace: testContainerdNamespace, HostPID: 1 << 30,
		ShimBinaries: []string{testShim(t)}})
	if err != nil {
		t.Fatal(err)
	}
	if d.Host != d.Own || d.HostPID != os.Getpid() || !strings.Contains(d.HostNote, "unreadable") {
		t.Errorf("host mnt:[%d] pid %d note %q; own mnt:[%d]", d.Host, d.HostPID, d.HostNote, d.Own)
	}
	if !d.Rejoin || d.Target.Inode != h.Namespace {
		t.Errorf("decision %+v", d)
	}
}

// execProbe is what the exec tests run in place of dockerd: it prints its
// mount namespace, whether the shim's mount is in its mount table, its
// working directory, two environment variables (the second the rejoin mark) and its soft limit of open
// files.
const execProbe = `readlink /proc/self/ns/mnt; awk -v m="$1" '$5 == m { print "mounted" }' /proc/self/mountinfo; pwd; echo "$NSDETACH_PROBE"; echo "$NSDETACH_REJOIN"; ulimit -n`

func TestExecRejoin(t *testing.T) {
	nstest.RequireRoot(t)
	cases := []struct {
		name   string
		rejoin bool
		// hidden over-mounts DOCKERD's directory in the target namespace,
		// so that DOCKERD's path names nothing there.
		hidden bool
		// noExecveat runs the helper as on a kernel without execveat.
		noExecveat bool
		// script makes DOCKERD a shell script (a wrapper, as a unit's
		// ExecStart= may name) rather than a binary.
		script bool
		// fails is part of the helper's error when the exec must fail.
		fails string
	}{
		{name: "no rejoin"},
		{name: "rejoin", rejoin: true},
		{name: "rejoin, DOCKERD's path names nothing in the target namespace", rejoin: true, hidden: true},
		{name: "no rejoin, DOCKERD is a script", script: true},
		{name: "rejoin, DOCKERD is a script", rejoin: true, script: true},
		{name: "rejoin, DOCKERD is a script whose path names nothing in the target namespace", rejoin: true, hidden: true, script: true},
		{name: "rejoin without execveat", rejoin: true, noExecveat: true},
		{name: "rejoin without execveat, DOCKERD is a script", rejoin: true, noExecveat: true, script: true},
		{name: "rejoin without execveat, DOCKERD's path names nothing in the target namespace", rejoin: true, hidden: true, noExecveat: true,
			fails: "no such file or directory"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := nstest.Dir(t)
			root := filepath.Join(dir, "docker")
			merged := filepath.Join(root, "overlay2", "l1", "merged")
			bin := filepath.Join(dir, "bin")
			mkdirs(t, merged, bin)
			dockerd := filepath.Join(bin, "dockerd")
			if c.script {
				if err := os.WriteFile(dockerd, []byte("#!/bin/sh\nexec /bin/sh \"$@\"\n"), 0o755); err != nil {
					t.Fatal(err)
				}
			} else if err := os.Symlink("/bin/sh", dockerd); err != nil {
				t.Fatal(err)
			}
			wantNS, _ := nstest.NamespaceOf(os.Getpid())
			wantMounted, wantMark := "", "own namespace"
			if c.rejoin {
				mounts := []string{merged}
				if c.hidden {
					mounts = append(mounts, bin)
				}
				h := startShim(t, testContainerdNamespace, mounts...)
				wantNS, wantMounted = h.Namespace, "mounted\n"
				wantMark = fmt.Sprintf("joined mnt:[%d]", h.Namespace)
			}
			// A mark inherited from an earlier launcher is replaced.
			env := []string{"NSDETACH_PROBE=probe-" + testContainerdNamespace, daemon.RejoinEnv + "=stale"}
			if c.noExecveat {
				env = append(env, "NSDETACH_REJOIN_NO_EXECVEAT=1")
			}
			out, errOut, err := runRejoinHelper(t, dir, root, []string{dockerd, "-c", execProbe, "probe", merged}, env...)
			if c.fails != "" {
				if err == nil || !strings.Contains(out, c.fails) {
					t.Errorf("the exec did not fail with %q: %v\nstdout %s\nstderr %s", c.fails, err, out, errOut)
				}
				return
			}
			if err != nil {
				t.Fatalf("helper: %v\nstdout %s\nstderr %s", err, out, errOut)
			}
			// The helper starts with 1024 open files (of 4096); the Go
			// runtime raises its own limit, and the exec'd program must
			// get 1024 back.
			want := fmt.Sprintf("mnt:[%d]\n%s%s\nprobe-%s\n%s\n1024\n", wantNS, wantMounted, dir, testContainerdNamespace, wantMark)
			if out != want {
				t.Errorf("the exec'd program printed %q, want %q (stderr %q)", out, want, errOut)
			}
		})
	}
}

// runRejoinHelper runs TestExecRejoinHelper in a process of its own, in
// dir, deciding for data root root and then exec'ing argv; it returns what
// the exec'd program (or the helper) printed.
func runRejoinHelper(t *testing.T, dir, root string, argv []string, env ...string) (stdout, stderr string, err error) {
	t.Helper()
	b, err := json.Marshal(argv)
	if err != nil {
		t.Fatal(err)
	}
	// prlimit: a soft limit of open files below the hard one, which the Go
	// runtime raises in the helper.
	cmd := exec.Command("prlimit", "--nofile=1024:4096", "--", testShim(t), "-test.run=^TestExecRejoinHelper$")
	cmd.Env = append(append(os.Environ(), "NSDETACH_REJOIN_HELPER="+root, "NSDETACH_REJOIN_NS="+testContainerdNamespace,
		"NSDETACH_REJOIN_ARGV="+string(b)), env...)
	cmd.Dir = dir
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err = cmd.Run()
	return out.String(), errOut.String(), err
}

// TestExecRejoinHelper is the process runRejoinHelper starts: it decides and
// execs the argv it was given, from a process with many threads and
// goroutines, as the CLI does.
func TestExecRejoinHelper(t *testing.T) {
	root := os.Getenv("NSDETACH_REJOIN_HELPER")
	if root == "" {
		t.Skip("run by runRejoinHelper")
	}
	*daemon.NoExecveat = os.Getenv("NSDETACH_REJOIN_NO_EXECVEAT") != ""
	var argv []string
	if err := json.Unmarshal([]byte(os.Getenv("NSDETACH_REJOIN_ARGV")), &argv); err != nil {
		t.Fatal(err)
	}
	// The engine's shim binary is this test binary, the one the fake shims
	// run: an attacker who runs the real shim binary must fail the other
	// checks.
	d, err := daemon.DecideRejoin(context.Background(), daemon.RejoinConfig{
		Args: []string{"dockerd"}, DataRoot: root, ContainerdNamespace: os.Getenv("NSDETACH_REJOIN_NS"),
		ShimBinaries: []string{testShim(t)}})
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintln(os.Stderr, d.Reason)
	if os.Getenv("NSDETACH_REJOIN_FAILS") == "" {
		t.Fatal(daemon.ExecRejoin(d, argv, os.Environ()))
	}
	// The exec is expected to fail after the namespace was joined: report
	// whether this goroutine was on the main thread when it called
	// ExecRejoin (where the joining goroutine starts, with GOMAXPROCS=1),
	// and the main thread's namespace afterwards (/proc/self names the
	// main thread).
	runtime.LockOSThread()
	onMain := unix.Gettid() == unix.Getpid()
	runtime.UnlockOSThread()
	err = daemon.ExecRejoin(d, argv, os.Environ())
	ns, _ := os.Readlink("/proc/self/ns/mnt")
	fmt.Printf("main=%v rejoin=%v ns=%s err=%v\n", onMain, d.Rejoin, ns, err)
}

// TestExecRejoinFailureStaysOnItsThread: when the exec fails after the
// namespace was joined, the namespace must stay with the thread that
// joined it and die with it. The main thread must never join: it is never
// ended, and /proc/self (and every later /proc/self/mountinfo read) names
// it. GOMAXPROCS=1 makes the joining goroutine start on the caller's
// thread, so a caller on the main thread puts it there.
func TestExecRejoinFailureStaysOnItsThread(t *testing.T) {
	nstest.RequireRoot(t)
	dir := nstest.Dir(t)
	root := filepath.Join(dir, "docker")
	startShim(t, testContainerdNamespace, filepath.Join(root, "overlay2", "l1", "merged"))
	// Executable, but neither ELF nor script: execve fails with ENOEXEC.
	notAProgram := filepath.Join(dir, "dockerd")
	if err := os.WriteFile(notAProgram, []byte("not a program\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	own, err := nstest.NamespaceOf(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	want := fmt.Sprintf("main=true rejoin=true ns=mnt:[%d] err=exec %s in mnt:[", own, notAProgram)
	const tries = 10
	for i := 0; i < tries; i++ {
		out, errOut, err := runRejoinHelper(t, dir, root, []string{notAProgram}, "GOMAXPROCS=1", "NSDETACH_REJOIN_FAILS=1")
		if err != nil {
			t.Fatalf("helper: %v\nstdout %s\nstderr %s", err, out, errOut)
		}
		if strings.HasPrefix(out, "main=false ") {
			continue // the call was not made from the main thread this time
		}
		if !strings.HasPrefix(out, want) || !strings.Contains(out, "exec format error") {
			t.Fatalf("after the failed exec the helper printed %q, want %q...exec format error (stderr %q)", out, want, errOut)
		}
		return
	}
	t.Fatalf("in %d runs the helper never called ExecRejoin from the main thread", tries)
}
