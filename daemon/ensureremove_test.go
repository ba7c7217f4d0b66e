package daemon_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/nsdetach/nsdetach/daemon"
	"github.com/nsdetach/nsdetach/internal/nstest"
	"github.com/nsdetach/nsdetach/mountns"
	"github.com/sirupsen/logrus"
	logtest "github.com/sirupsen/logrus/hooks/test"
	"golang.org/x/sys/unix"
)

var quiet = mountns.WithLogger(func() *logrus.Logger { l, _ := logtest.NewNullLogger(); return l }())

var kernels = []struct {
	name    string
	remover mountns.Remover
}{
	{"new kernel", mountns.SystemRemover{}},
	{"old kernel", nstest.OldKernel{}},
}

// ctr is a container directory as moby lays it out, with the mounts
// cleanupContainer finds there.
type ctr struct {
	dir, shm, secrets string
	holder            *nstest.Holder
}

func newCtr(t *testing.T, base string) ctr {
	c := ctr{dir: filepath.Join(base, "containers", "c1")}
	c.shm, c.secrets = filepath.Join(c.dir, "mounts", "shm"), filepath.Join(c.dir, "mounts", "secrets")
	for _, d := range []string{c.shm, c.secrets} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(c.dir, "config.v2.json"), []byte("{}"), 0o644); err != nil {
		t.Fatal(err)
	}
	return c
}

// setups build a container directory in one situation.
var setups = map[string]func(t *testing.T, c *ctr){
	"nothing mounted": func(t *testing.T, c *ctr) {},
	"shm mounted here": func(t *testing.T, c *ctr) {
		nstest.MountTmpfs(t, c.shm)
	},
	"shm leaked into a shim": func(t *testing.T, c *ctr) {
		nstest.MountTmpfs(t, c.shm)
		c.holder = nstest.StartHolder(t, nstest.HolderSpec{})
		unmount(t, c.shm)
	},
	"shm and secrets only in a shim": func(t *testing.T, c *ctr) {
		c.holder = nstest.StartHolder(t, nstest.HolderSpec{Tmpfs: []string{c.shm, c.secrets}})
	},
	"locked copy in a user namespace": func(t *testing.T, c *ctr) {
		nstest.MountTmpfs(t, c.shm)
		c.holder = nstest.StartHolder(t, nstest.HolderSpec{UserNS: true})
		unmount(t, c.shm)
	},
}

func unmount(t *testing.T, p string) {
	t.Helper()
	if err := unix.Unmount(p, unix.MNT_DETACH); err != nil {
		t.Fatal(err)
	}
}

func TestEnsureRemoveAll(t *testing.T) {
	type want struct {
		scans int
		busy  bool
	}
	cases := []struct {
		setup string
		want  map[string]want // by kernel
	}{
		{"nothing mounted", map[string]want{"new kernel": {0, false}, "old kernel": {0, false}}},
		{"shm mounted here", map[string]want{"new kernel": {0, false}, "old kernel": {0, false}}},
		{"shm leaked into a shim", map[string]want{"new kernel": {0, false}, "old kernel": {1, false}}},
		{"shm and secrets only in a shim", map[string]want{"new kernel": {0, false}, "old kernel": {2, false}}},
		{"locked copy in a user namespace", map[string]want{"new kernel": {0, false}, "old kernel": {1, true}}},
	}
	for _, k := range kernels {
		for _, tc := range cases {
			t.Run(k.name+"/"+tc.setup, func(t *testing.T) {
				nstest.RequireRoot(t)
				c := newCtr(t, nstest.Dir(t))
				setups[tc.setup](t, &c)
				n := &nstest.Scans{}
				err := daemon.EnsureRemoveAll(context.Background(), c.dir, mountns.WithLister(n), quiet, mountns.WithRemover(k.remover))
				w := tc.want[k.name]
				if n.Count() != w.scans {
					t.Errorf("scans = %d, want %d", n.Count(), w.scans)
				}
				if w.busy {
					checkBusy(t, err, c.holder, c.shm)
					t.Log(err)
					return
				}
				if err != nil {
					t.Fatal(err)
				}
				if _, err := os.Stat(c.dir); !os.IsNotExist(err) {
					t.Errorf("%s still there: %v", c.dir, err)
				}
				if c.holder != nil && (nstest.IsMountedIn(c.holder.PID, c.shm) || nstest.IsMountedIn(c.holder.PID, c.secrets)) {
					t.Error("the shim still holds a mount")
				}
			})
		}
	}
}

func checkBusy(t *testing.T, err error, h *nstest.Holder, path string) {
	t.Helper()
	var be *daemon.BusyError
	if !errors.As(err, &be) {
		t.Fatalf("err = %v, want a *BusyError", err)
	}
	if !errors.Is(err, unix.EBUSY) {
		t.Errorf("errors.Is(err, EBUSY) = false: %v", err)
	}
	for _, s := range []string{path, fmt.Sprintf("mnt:[%d]", h.Namespace), strconv.Itoa(h.PID), "stop the processes"} {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("error does not say %q: %v", s, err)
		}
	}
}

func TestEnsureRemoveAllBadInput(t *testing.T) {
	nstest.RequireRoot(t)
	old := mountns.WithRemover(nstest.OldKernel{})
	base := nstest.Dir(t)
	c := newCtr(t, base)
	setups["shm leaked into a shim"](t, &c)
	ctx := context.Background()
	canceled, cancel := context.WithCancel(ctx)
	cancel()
	slash := filepath.Join(base, "slash")
	if err := os.Symlink("/", slash); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		call func() error
		want error
	}{
		{"relative dir", func() error { return daemon.EnsureRemoveAll(ctx, "containers/c1", old) }, nil},
		{"the root directory", func() error { return daemon.EnsureRemoveAll(ctx, "/", old) }, nil},
		{"busy path outside the allowed root", func() error {
			return daemon.EnsureRemoveAll(ctx, c.dir, mountns.WithRoot(filepath.Join(c.dir, "elsewhere")), old)
		}, nil},
		{"context ended", func() error { return daemon.EnsureRemoveAll(canceled, c.dir, old) }, context.Canceled},
		{"allowed root symlinked to /", func() error {
			return daemon.EnsureRemoveAll(ctx, c.dir, mountns.WithRoot(slash), old)
		}, nil},
		{"a symlink to the root directory", func() error { return daemon.EnsureRemoveAll(ctx, slash, old) }, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.call()
			if err == nil {
				t.Fatal("no error")
			}
			if tc.want != nil && !errors.Is(err, tc.want) {
				t.Errorf("err = %v, want %v", err, tc.want)
			}
			t.Log(err)
		})
	}
	if !nstest.IsMountedIn(c.holder.PID, c.shm) {
		t.Error("bad input detached a mount")
	}
	if err := daemon.EnsureRemoveAll(ctx, filepath.Join(base, "missing"), old); err != nil {
		t.Errorf("a missing directory: %v", err)
	}
}

// TestEnsureRemoveAllConcurrent removes 32 container directories whose shm
// leaked into one shim at once, and two callers race on one more.
func TestEnsureRemoveAllConcurrent(t *testing.T) {
	for _, k := range kernels {
		t.Run(k.name, func(t *testing.T) {
			nstest.RequireRoot(t)
			base := nstest.Dir(t)
			var cs []ctr
			for i := 0; i < 33; i++ {
				c := newCtr(t, filepath.Join(base, strconv.Itoa(i)))
				nstest.MountTmpfs(t, c.shm)
				cs = append(cs, c)
			}
			h := nstest.StartHolder(t, nstest.HolderSpec{})
			for _, c := range cs {
				unmount(t, c.shm)
			}
			nstest.Race(t, len(cs), func(i int) error {
				return daemon.EnsureRemoveAll(context.Background(), cs[i].dir, quiet, mountns.WithRemover(k.remover))
			})
			for _, c := range cs {
				if nstest.IsMountedIn(h.PID, c.shm) {
					t.Errorf("shim still holds %s", c.shm)
				}
				if _, err := os.Stat(c.dir); !os.IsNotExist(err) {
					t.Errorf("%s still there", c.dir)
				}
			}
		})
	}
}
