package mobydriver_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/docker/docker/daemon/graphdriver"
	mobyoverlay2 "github.com/docker/docker/daemon/graphdriver/overlay2"
	"github.com/moby/sys/user"
	"github.com/nsdetach/nsdetach/internal/nstest"
	"github.com/nsdetach/nsdetach/mountns"
	"github.com/nsdetach/nsdetach/overlay2"
	"github.com/nsdetach/nsdetach/overlay2/mobydriver"
	"github.com/sirupsen/logrus"
	logtest "github.com/sirupsen/logrus/hooks/test"
	"golang.org/x/sys/unix"
)

// daemon is one run of a storage driver over a home directory: a restart
// is a new daemon over the same home, with fresh reference counts.
type daemon struct {
	*mobydriver.Driver
	home  string
	scans *nstest.Scans
	log   *logtest.Hook
}

func start(t *testing.T, home string) *daemon {
	t.Helper()
	inner, err := mobyoverlay2.Init(home, nil, user.IdentityMapping{})
	if err != nil {
		t.Skipf("moby's overlay2 does not run here: %v", err)
	}
	log, hook := logtest.NewNullLogger()
	log.SetLevel(logrus.DebugLevel)
	n := &nstest.Scans{}
	return &daemon{Driver: mobydriver.New(inner, home, log, mountns.WithLister(n)), home: home, scans: n, log: hook}
}

// newHome makes a driver home with a base image layer and a container
// layer "c1" on it, as moby creates them.
func newHome(t *testing.T, ids ...string) (string, *daemon) {
	t.Helper()
	home := filepath.Join(nstest.Dir(t), "overlay2")
	d := start(t, home)
	if err := d.Create("base", "", nil); err != nil {
		t.Fatal(err)
	}
	if len(ids) == 0 {
		ids = []string{"c1"}
	}
	for _, id := range ids {
		if err := d.CreateReadWrite(id, "base", nil); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() {
		// Remove in the test's namespace whatever a test left mounted.
		if err := d.Cleanup(); err != nil {
			t.Errorf("driver cleanup: %v", err)
		}
	})
	return home, d
}

func (d *daemon) merged(id string) string { return filepath.Join(d.home, id, "merged") }
func (d *daemon) diff(id string) string   { return filepath.Join(d.home, id, "diff") }

func (d *daemon) logged(s string) bool {
	for _, e := range d.log.AllEntries() {
		if line, _ := e.String(); strings.Contains(line, s) {
			return true
		}
	}
	return false
}

func mustGet(t *testing.T, d *daemon, id string) string {
	t.Helper()
	p, err := d.Get(id, "")
	if err != nil {
		t.Fatal(err)
	}
	if !nstest.IsMountPoint(p) {
		t.Fatalf("Get(%s) = %s, not a mount point", id, p)
	}
	return p
}

// leak is the incident: the layer is mounted, a shim (or a container) of
// that namespace keeps a copy, and the daemon restarts into a namespace
// without the mount (here: the test's mount goes, and a new driver with
// fresh counts starts over the same home).
func leak(t *testing.T, spec func(d *daemon) nstest.HolderSpec) (*daemon, *nstest.Holder) {
	t.Helper()
	home, d := newHome(t)
	mustGet(t, d, "c1")
	h := nstest.StartHolder(t, spec(d))
	if err := unix.Unmount(d.merged("c1"), unix.MNT_DETACH); err != nil {
		t.Fatal(err)
	}
	return start(t, home), h
}

func shim(*daemon) nstest.HolderSpec        { return nstest.HolderSpec{Extra: 1} }
func container(d *daemon) nstest.HolderSpec { return nstest.HolderSpec{PivotRoot: d.merged("c1")} }

func TestFastPath(t *testing.T) {
	nstest.RequireRoot(t)
	_, d := newHome(t)
	// Two references: the first Put must leave the mount, the second drop it.
	p := mustGet(t, d, "c1")
	mustGet(t, d, "c1")
	if err := d.Put("c1"); err != nil {
		t.Fatal(err)
	}
	if !nstest.IsMountPoint(p) {
		t.Fatal("the first Put of two dropped the mount: the reference count is not moby's")
	}
	if err := d.Put("c1"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(p); !os.IsNotExist(err) {
		t.Errorf("merged still there after the last Put: %v", err)
	}
	if n := d.scans.Count(); n != 0 {
		t.Errorf("Get/Put scanned %d times, want 0", n)
	}
	if err := d.Remove("c1"); err != nil {
		t.Fatal(err)
	}
	if n := d.scans.Count(); n != 1 {
		t.Errorf("Remove scanned %d times, want 1", n)
	}
}

func TestAfterRestart(t *testing.T) {
	cases := []struct {
		name   string
		holder func(d *daemon) nstest.HolderSpec
		// run does what the restarted daemon does, and checks it
		run func(t *testing.T, d *daemon, h *nstest.Holder)
	}{
		{"Get detaches the shim's stale copy", shim, func(t *testing.T, d *daemon, h *nstest.Holder) {
			mustGet(t, d, "c1")
			if nstest.IsMountedIn(h.PID, d.merged("c1")) {
				t.Error("the shim still has the old mount")
			}
			if n := d.scans.Count(); n != 1 {
				t.Errorf("scans = %d, want 1", n)
			}
			if err := d.Put("c1"); err != nil {
				t.Fatal(err)
			}
		}},
		{"Put after restart removes the shim's copy", shim, func(t *testing.T, d *daemon, h *nstest.Holder) {
			if err := d.Put("c1"); err != nil {
				t.Fatal(err)
			}
			if nstest.IsMountedIn(h.PID, d.merged("c1")) {
				t.Error("the shim still has the mount")
			}
			if _, err := os.Stat(d.merged("c1")); !os.IsNotExist(err) {
				t.Errorf("merged still there: %v", err)
			}
		}},
		{"Remove detaches the shim's copy first", shim, func(t *testing.T, d *daemon, h *nstest.Holder) {
			if err := d.Remove("c1"); err != nil {
				t.Fatal(err)
			}
			if nstest.IsMountedIn(h.PID, d.merged("c1")) || d.Exists("c1") {
				t.Error("the layer or the shim's copy is still there")
			}
		}},
		{"Get warns that a running container pins the old mount", container, func(t *testing.T, d *daemon, h *nstest.Holder) {
			mustGet(t, d, "c1")
			if !d.logged("running container still uses") || !d.logged(strconv.Itoa(h.PID)) {
				t.Error("no warning naming the container")
			}
			if !nstest.IsMountedIn(h.PID, "/") {
				t.Error("the container lost its root")
			}
			if err := d.Put("c1"); err != nil {
				t.Fatal(err)
			}
		}},
		{"Remove refuses while a container runs on the layer", container, func(t *testing.T, d *daemon, h *nstest.Holder) {
			err := d.Remove("c1")
			var he *overlay2.HeldError
			if !errors.As(err, &he) || len(he.Live()) == 0 {
				t.Fatalf("err = %v, want a *HeldError with a live container", err)
			}
			for _, s := range []string{"c1", fmt.Sprintf("mnt:[%d]", h.Namespace), strconv.Itoa(h.PID), "stop that container"} {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error does not say %q: %v", s, err)
				}
			}
			if _, err := os.Stat(d.diff("c1")); err != nil {
				t.Fatalf("the diff dir of a layer in use was removed: %v", err)
			}
			if err := h.Stop(); err != nil {
				t.Fatal(err)
			}
			if err := d.Remove("c1"); err != nil {
				t.Fatalf("Remove after the container stopped: %v", err)
			}
		}},
		// The container stops while another process holds a reference to
		// its namespace (a concurrent scan reading its mountinfo or walking
		// the namespaces; under load such windows stretch): the nsfs walk
		// still finds the namespace, with no process in it and the layer as
		// its root. The open fd here holds it for as long as the check needs.
		{"Remove after the container stopped, its namespace still pinned", container, func(t *testing.T, d *daemon, h *nstest.Holder) {
			fd, err := unix.Open("/proc/"+strconv.Itoa(h.PID)+"/ns/mnt", unix.O_RDONLY|unix.O_CLOEXEC, 0)
			if err != nil {
				t.Fatal(err)
			}
			defer unix.Close(fd)
			if err := h.Stop(); err != nil {
				t.Fatal(err)
			}
			if err := d.Remove("c1"); err != nil {
				t.Fatalf("Remove of a stopped container's layer: %v", err)
			}
			if d.Exists("c1") {
				t.Error("the layer is still there")
			}
		}},
		{"overlay2.Unmount, the patched Put, frees a moby layer", shim, func(t *testing.T, d *daemon, h *nstest.Holder) {
			if err := new(overlay2.Layers).Unmount(context.Background(), d.merged("c1"), mountns.WithRoot(d.home)); err != nil {
				t.Fatal(err)
			}
			if nstest.IsMountedIn(h.PID, d.merged("c1")) {
				t.Error("the shim still has the mount")
			}
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			nstest.RequireRoot(t)
			d, h := leak(t, tc.holder)
			tc.run(t, d, h)
		})
	}
}

func TestBadInput(t *testing.T) {
	nstest.RequireRoot(t)
	_, d := newHome(t)
	cases := []struct {
		name string
		call func() error
		want []string // "" entries: nil error expected
	}{
		{"Get of a layer that does not exist", func() error { _, err := d.Get("0000", ""); return err },
			[]string{"0000", "does not exist", "check the id"}},
		{"Get of an id that leaves the home", func() error { _, err := d.Get("../x", ""); return err },
			[]string{"invalid layer id", "../x"}},
		{"Put of an id that leaves the home", func() error { return d.Put("../x") }, []string{"invalid layer id"}},
		{"Remove of an id that leaves the home", func() error { return d.Remove("../../etc") }, []string{"invalid layer id"}},
		{"Remove of a layer that does not exist is moby's no-op", func() error { return d.Remove("0000") }, nil},
		{"Unmount of a mount point outside the home", func() error {
			return new(overlay2.Layers).Unmount(context.Background(), "/var/lib/docker/overlay2/c1/merged", mountns.WithRoot(d.home))
		}, []string{"outside the allowed root"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.call()
			if tc.want == nil {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil {
				t.Fatal("no error")
			}
			for _, s := range tc.want {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error does not say %q: %v", s, err)
				}
			}
		})
	}
}

// TestConcurrent puts and removes 32 layers at once, while two callers
// race on one more layer that both have mounted.
func TestConcurrent(t *testing.T) {
	nstest.RequireRoot(t)
	ids := append(nstest.IDs(32), "shared")
	_, d := newHome(t, ids...)
	for _, id := range ids {
		mustGet(t, d, id)
	}
	mustGet(t, d, "shared")
	h := nstest.StartHolder(t, nstest.HolderSpec{})
	// Race puts and removes the last id, "shared", twice at once.
	nstest.Race(t, len(ids), func(i int) error {
		err := d.Put(ids[i])
		if err != nil {
			err = fmt.Errorf("Put(%s): %w", ids[i], err)
		}
		if rerr := d.Remove(ids[i]); rerr != nil {
			err = errors.Join(err, fmt.Errorf("Remove(%s): %w", ids[i], rerr))
		}
		return err
	})
	for _, id := range ids {
		if d.Exists(id) || nstest.IsMountedIn(h.PID, d.merged(id)) {
			t.Errorf("%s left behind", id)
		}
	}
}

var _ graphdriver.Driver = (*mobydriver.Driver)(nil)
