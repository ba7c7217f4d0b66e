package mobylayer_test

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/docker/docker/daemon/graphdriver"
	mobyoverlay2 "github.com/docker/docker/daemon/graphdriver/overlay2"
	"github.com/docker/docker/layer"
	"github.com/moby/go-archive"
	"github.com/moby/sys/mount"
	"github.com/moby/sys/user"
	"github.com/nsdetach/nsdetach/internal/nstest"
	nslayer "github.com/nsdetach/nsdetach/layer"
	"github.com/nsdetach/nsdetach/layer/mobylayer"
	"github.com/nsdetach/nsdetach/mountns"
	"github.com/sirupsen/logrus"
	logtest "github.com/sirupsen/logrus/hooks/test"
	"golang.org/x/sys/unix"
)

func TestMain(m *testing.M) {
	// moby's store logs each failed first attempt at error level; the
	// tests check the outcome instead.
	logrus.SetOutput(io.Discard)
	nstest.Main(m)
}

// oldKernel is moby's overlay2 on a kernel without detach-on-rmdir: its
// Remove answers what containerfs.EnsureRemoveAll answers there (after its
// 50 retries) while any namespace has a mount point in the layer.
type oldKernel struct {
	graphdriver.Driver
	home string
}

const oldKernelDriver = "overlay2-oldkernel"

func init() {
	graphdriver.Register(oldKernelDriver, func(home string, opts []string, idMap user.IdentityMapping) (graphdriver.Driver, error) {
		inner, err := mobyoverlay2.Init(home, opts, idMap)
		return oldKernel{inner, home}, err
	})
}

func (d oldKernel) Remove(id string) error {
	dir := filepath.Join(d.home, id)
	_ = mount.RecursiveUnmount(dir) // as EnsureRemoveAll does first
	if mps := nstest.MountpointsAnywhere(dir); len(mps) > 0 {
		return &os.PathError{Op: "unlinkat", Path: mps[0], Err: unix.EBUSY}
	}
	return d.Driver.Remove(id)
}

var quiet = mountns.WithLogger(func() *logrus.Logger { l, _ := logtest.NewNullLogger(); return l }())

// world is a data root with a base image layer and container layers on it,
// made by moby's layer store over moby's overlay2.
type world struct {
	root, home string
	base       layer.ChainID
	store      layer.Store
	// rws are the references CreateRWLayer returned, by container.
	rws map[string]layer.RWLayer
}

func newWorld(t *testing.T, ctrs ...string) *world {
	t.Helper()
	w := &world{root: nstest.Dir(t), rws: map[string]layer.RWLayer{}}
	w.home = filepath.Join(w.root, oldKernelDriver)
	w.store = w.open(t)
	tar, err := archive.Generate("etc/hostname", "base\n")
	if err != nil {
		t.Fatal(err)
	}
	base, err := w.store.Register(tar, "")
	if err != nil {
		t.Fatal(err)
	}
	w.base = base.ChainID()
	for _, c := range ctrs {
		rw, err := w.store.CreateRWLayer(c, w.base, &layer.CreateRWLayerOpts{InitFunc: func(string) error { return nil }})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := rw.Mount(""); err != nil {
			t.Fatal(err)
		}
		w.rws[c] = rw
	}
	return w
}

// open starts a layer store over the data root, as a daemon start does.
func (w *world) open(t *testing.T) layer.Store {
	t.Helper()
	s, err := layer.NewStoreFromOptions(layer.StoreOptions{Root: w.root, GraphDriver: oldKernelDriver})
	if err != nil {
		t.Skipf("moby's overlay2 does not run here: %v", err)
	}
	t.Cleanup(func() { s.Cleanup() })
	return s
}

func (w *world) layerDir(t *testing.T, s layer.Store, name string) string {
	id, err := s.GetMountID(name)
	if err != nil {
		t.Fatal(err)
	}
	return filepath.Join(w.home, id)
}

// restart is the incident: holders keep the daemon's mounts, the daemon
// comes back in a namespace without them and opens the store again.
func (w *world) restart(t *testing.T, ctrs []string, specs ...func(merged string) nstest.HolderSpec) (layer.Store, []*nstest.Holder) {
	t.Helper()
	hs := w.leak(t, ctrs, specs...)
	return w.open(t), hs
}

// leak starts the holders and drops the containers' mounts here.
func (w *world) leak(t *testing.T, ctrs []string, specs ...func(merged string) nstest.HolderSpec) []*nstest.Holder {
	t.Helper()
	var hs []*nstest.Holder
	for _, spec := range specs {
		hs = append(hs, nstest.StartHolder(t, spec(filepath.Join(w.layerDir(t, w.store, ctrs[0]), "merged"))))
	}
	for _, c := range ctrs {
		merged := filepath.Join(w.layerDir(t, w.store, c), "merged")
		if err := unix.Unmount(merged, unix.MNT_DETACH); err != nil {
			t.Fatal(err)
		}
	}
	return hs
}

func shim(string) nstest.HolderSpec             { return nstest.HolderSpec{} }
func container(merged string) nstest.HolderSpec { return nstest.HolderSpec{PivotRoot: merged} }
func userns(string) nstest.HolderSpec           { return nstest.HolderSpec{UserNS: true} }

func TestReleaseRWLayer(t *testing.T) {
	cases := []struct {
		name    string
		holders []func(string) nstest.HolderSpec
		scans   int
		// the first release's error must say this; "" for success
		err string
	}{
		{"no holder: fast path", nil, 0, ""},
		{"shim holds the container's mount", []func(string) nstest.HolderSpec{shim}, 1, ""},
		{"a container runs on the layer", []func(string) nstest.HolderSpec{shim, container}, 1, "running container"},
		{"locked copy in a user namespace", []func(string) nstest.HolderSpec{userns}, 1, "locked by a user namespace"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			nstest.RequireRoot(t)
			w := newWorld(t, "c1")
			s, hs := w.restart(t, []string{"c1"}, tc.holders...)
			n := &nstest.Scans{}
			ws := mobylayer.New(s, w.home, mountns.WithLister(n), quiet)
			rw, err := ws.GetRWLayer("c1")
			if err != nil {
				t.Fatal(err)
			}
			dir := w.layerDir(t, s, "c1")
			md, err := ws.ReleaseRWLayer(rw)
			if n.Count() != tc.scans {
				t.Errorf("scans = %d, want %d", n.Count(), tc.scans)
			}
			if tc.err != "" {
				var re *nslayer.ReleaseError
				if !errors.As(err, &re) {
					t.Fatalf("err = %v, want a *layer.ReleaseError", err)
				}
				h := hs[len(hs)-1]
				for _, s := range []string{filepath.Base(dir), tc.err, fmt.Sprintf("mnt:[%d]", h.Namespace), strconv.Itoa(h.PID)} {
					if !strings.Contains(err.Error(), s) {
						t.Errorf("error does not say %q: %v", s, err)
					}
				}
				if _, err := os.Stat(filepath.Join(dir, "diff")); err != nil {
					t.Fatalf("the diff dir of a layer still mounted was removed: %v", err)
				}
				// Still referenced and usable; released once the holders are gone.
				if _, err := rw.Mount(""); err != nil {
					t.Fatalf("layer not usable after a failed release: %v", err)
				}
				if err := rw.Unmount(); err != nil {
					t.Fatal(err)
				}
				for _, h := range hs {
					if err := h.Stop(); err != nil {
						t.Fatal(err)
					}
				}
				md, err = ws.ReleaseRWLayer(rw)
			}
			if err != nil {
				t.Fatal(err)
			}
			// moby's metadata: the base image layer, referenced only by
			// this container in the restarted store, goes with it.
			if len(md) != 1 || md[0].ChainID != w.base {
				t.Errorf("metadata = %+v, want the base layer %s", md, w.base)
			}
			if _, err := ws.GetRWLayer("c1"); !errors.Is(err, layer.ErrMountDoesNotExist) {
				t.Errorf("layer still known after release: %v", err)
			}
			if _, err := os.Stat(dir); !os.IsNotExist(err) {
				t.Errorf("layer directory still there: %v", err)
			}
		})
	}
}

func TestReleaseTwice(t *testing.T) {
	nstest.RequireRoot(t)
	w := newWorld(t, "c1")
	ws := mobylayer.New(w.store, w.home, quiet)
	rw, err := ws.GetRWLayer("c1")
	if err != nil {
		t.Fatal(err)
	}
	// newWorld's reference keeps the layer: this release only drops ours.
	if md, err := ws.ReleaseRWLayer(rw); err != nil || len(md) != 0 {
		t.Fatalf("release = %v, %v", md, err)
	}
	if _, err := ws.ReleaseRWLayer(rw); !errors.Is(err, layer.ErrLayerNotRetained) {
		t.Errorf("releasing a reference twice: %v, want moby's ErrLayerNotRetained", err)
	}
	// A layer the store no longer knows: moby's empty answer.
	s, _ := w.restart(t, []string{"c1"})
	ws = mobylayer.New(s, w.home, quiet)
	if rw, err = ws.GetRWLayer("c1"); err != nil {
		t.Fatal(err)
	}
	if _, err := ws.ReleaseRWLayer(rw); err != nil {
		t.Fatal(err)
	}
	if md, err := ws.ReleaseRWLayer(rw); err != nil || len(md) != 0 {
		t.Errorf("release of a removed layer = %v, %v; want moby's empty answer", md, err)
	}
}

// TestConcurrentRelease releases 32 container layers held by a shim at
// once, and two references of one more layer race. The daemon does not
// restart here: reopening a home of this size trips a checkptr fault in
// continuity v0.4.5's SupportsDType under -race (moby's overlay2.Init calls
// it), which has nothing to do with the code under test.
func TestConcurrentRelease(t *testing.T) {
	nstest.RequireRoot(t)
	all := append(nstest.IDs(32), "shared")
	w := newWorld(t, all...)
	hs := w.leak(t, all, shim)
	ws := mobylayer.New(w.store, w.home, quiet)
	second, err := ws.GetRWLayer("shared")
	if err != nil {
		t.Fatal(err)
	}
	// The two callers that Race gives the last layer, "shared", release one
	// reference each.
	shared := make(chan layer.RWLayer, 2)
	shared <- w.rws["shared"]
	shared <- second
	var dirs []string
	for _, c := range all {
		dirs = append(dirs, w.layerDir(t, w.store, c))
	}
	nstest.Race(t, len(all), func(i int) error {
		rw := w.rws[all[i]]
		if all[i] == "shared" {
			rw = <-shared
		}
		_, err := ws.ReleaseRWLayer(rw)
		return err
	})
	for _, d := range dirs {
		if _, err := os.Stat(d); !os.IsNotExist(err) || nstest.IsMountedIn(hs[0].PID, filepath.Join(d, "merged")) {
			t.Errorf("%s left behind", d)
		}
	}
}
