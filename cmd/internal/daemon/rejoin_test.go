package daemon_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/nsdetach/nsdetach/cmd/internal/daemon"
	"github.com/nsdetach/nsdetach/internal/nstest"
)

// testContainerdNamespace keeps the fake shims of these tests apart from the
// real ones of any engine running on the machine.
var testContainerdNamespace = "nsdetach-test-" + strconv.Itoa(os.Getpid())

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
		// skipped, when set, returns a holder expected among the skipped
		// namespaces, with skip saying why.
		skip string
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
			skip: "the host's initial mount namespace",
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
			skip: "owned by user namespace",
		},
		{
			name: "the shims' namespace holds no mount below the root",
			build: func(t *testing.T, f fixture, cfg *daemon.RejoinConfig) *nstest.Holder {
				startShim(t, testContainerdNamespace, filepath.Join(f.dir, "elsewhere"))
				return nil
			},
			says: "nothing to rejoin",
			skip: "holds no mount below",
		},
		{
			name: "the data root's own mount does not count",
			build: func(t *testing.T, f fixture, cfg *daemon.RejoinConfig) *nstest.Holder {
				startShim(t, testContainerdNamespace, f.root)
				return nil
			},
			says: "nothing to rejoin",
			skip: "holds no mount below",
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
			cfg := daemon.RejoinConfig{Args: []string{"dockerd"}, DataRoot: f.root, ContainerdNamespace: testContainerdNamespace}
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
			if c.skip != "" {
				found := false
				for _, s := range d.Skipped {
					found = found || strings.Contains(s.Skipped, c.skip)
				}
				if !found || !strings.Contains(d.Reason, c.skip) {
					t.Errorf("no namespace skipped as %q: %+v; reason %q", c.skip, d.Skipped, d.Reason)
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
		Args: []string{"dockerd"}, DataRoot: root, ContainerdNamespace: testContainerdNamespace, HostPID: 1 << 30})
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
// working directory and an environment variable.
const execProbe = `readlink /proc/self/ns/mnt; awk -v m="$1" '$5 == m { print "mounted" }' /proc/self/mountinfo; pwd; echo "$NSDETACH_PROBE"`

func TestExecRejoin(t *testing.T) {
	nstest.RequireRoot(t)
	for _, rejoin := range []bool{true, false} {
		t.Run(fmt.Sprintf("rejoin=%v", rejoin), func(t *testing.T) {
			dir := nstest.Dir(t)
			root := filepath.Join(dir, "docker")
			merged := filepath.Join(root, "overlay2", "l1", "merged")
			mkdirs(t, merged)
			wantNS, _ := nstest.NamespaceOf(os.Getpid())
			wantMounted := ""
			if rejoin {
				h := startShim(t, testContainerdNamespace, merged)
				wantNS, wantMounted = h.Namespace, "mounted\n"
			}
			cmd := exec.Command(os.Args[0], "-test.run=^TestExecRejoinHelper$")
			cmd.Env = append(os.Environ(), "NSDETACH_REJOIN_HELPER="+root, "NSDETACH_REJOIN_NS="+testContainerdNamespace, "NSDETACH_PROBE=probe-"+testContainerdNamespace)
			cmd.Dir = dir
			var out, errOut bytes.Buffer
			cmd.Stdout, cmd.Stderr = &out, &errOut
			if err := cmd.Run(); err != nil {
				t.Fatalf("helper: %v\nstdout %s\nstderr %s", err, out.String(), errOut.String())
			}
			want := fmt.Sprintf("mnt:[%d]\n%s%s\nprobe-%s\n", wantNS, wantMounted, dir, testContainerdNamespace)
			if out.String() != want {
				t.Errorf("the exec'd program printed %q, want %q (stderr %q)", out.String(), want, errOut.String())
			}
		})
	}
}

// TestExecRejoinHelper is the process TestExecRejoin starts: it decides and
// execs the probe, from a process with many threads and goroutines, as the
// CLI does.
func TestExecRejoinHelper(t *testing.T) {
	root := os.Getenv("NSDETACH_REJOIN_HELPER")
	if root == "" {
		t.Skip("run by TestExecRejoin")
	}
	d, err := daemon.DecideRejoin(context.Background(), daemon.RejoinConfig{
		Args: []string{"dockerd"}, DataRoot: root, ContainerdNamespace: os.Getenv("NSDETACH_REJOIN_NS")})
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintln(os.Stderr, d.Reason)
	merged := filepath.Join(root, "overlay2", "l1", "merged")
	t.Fatal(daemon.ExecRejoin(d, []string{"sh", "-c", execProbe, "probe", merged}, os.Environ()))
}
