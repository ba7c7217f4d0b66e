package overlay2_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/nsdetach/nsdetach/internal/nstest"
	"github.com/nsdetach/nsdetach/mountns"
	"github.com/nsdetach/nsdetach/overlay2"
	"github.com/sirupsen/logrus"
	logtest "github.com/sirupsen/logrus/hooks/test"
	"golang.org/x/sys/unix"
)

// layer is an overlay laid out as moby's overlay2 lays out home/<id>.
type layer struct {
	home string
	nstest.Overlay
	holder *nstest.Holder
}

// setup builds one situation of a layer's mount point.
type setup func(t *testing.T) layer

func mounted(t *testing.T) layer {
	home := filepath.Join(nstest.Dir(t), "overlay2")
	return layer{home: home, Overlay: nstest.MountOverlay(t, filepath.Join(home, "3f1c"))}
}

// leaked is the incident: the mount was copied into a holder's namespace
// and is gone from ours (the daemon restarted into a new namespace).
func leaked(spec func(l layer) nstest.HolderSpec) setup {
	return func(t *testing.T) layer {
		l := heldToo(spec)(t)
		if err := unix.Unmount(l.Merged, unix.MNT_DETACH); err != nil {
			t.Fatal(err)
		}
		return l
	}
}

// heldToo leaves the mount in our namespace as well as the holder's.
func heldToo(spec func(l layer) nstest.HolderSpec) setup {
	return func(t *testing.T) layer {
		l := mounted(t)
		l.holder = nstest.StartHolder(t, spec(l))
		return l
	}
}

func shim(layer) nstest.HolderSpec        { return nstest.HolderSpec{Extra: 1} }
func userns(layer) nstest.HolderSpec      { return nstest.HolderSpec{UserNS: true} }
func container(l layer) nstest.HolderSpec { return nstest.HolderSpec{PivotRoot: l.Merged} }
func opts(l layer, c *nstest.Scans, log logrus.FieldLogger) []mountns.Option {
	return []mountns.Option{mountns.WithRoot(l.home), mountns.WithLister(c), mountns.WithLogger(log)}
}

func TestUnmount(t *testing.T) {
	var layers overlay2.Layers // the driver's memory of live layers
	type want struct {
		scans int
		held  bool // a *HeldError naming the holder
	}
	cases := []struct {
		name  string
		setup setup
		// by kernel name
		want map[string]want
		// the holder runs on the layer: its root must survive
		live bool
	}{
		{"no holder: fast path", mounted,
			map[string]want{"new kernel": {0, false}, "old kernel": {0, false}}, false},
		{"shim holds it, gone here", leaked(shim),
			map[string]want{"new kernel": {1, false}, "old kernel": {1, false}}, false},
		{"shim holds it, mounted here too", heldToo(shim),
			map[string]want{"new kernel": {0, false}, "old kernel": {1, false}}, false},
		{"locked copy in a user namespace", leaked(userns),
			map[string]want{"new kernel": {1, false}, "old kernel": {2, true}}, false},
		{"running container on the layer", leaked(container),
			map[string]want{"new kernel": {1, false}, "old kernel": {1, false}}, true},
	}
	for _, k := range kernels {
		for _, tc := range cases {
			t.Run(k.name+"/"+tc.name, func(t *testing.T) {
				nstest.RequireRoot(t)
				l := tc.setup(t)
				c := &nstest.Scans{}
				log, hook := logtest.NewNullLogger()
				err := layers.Unmount(context.Background(), l.Merged, append(opts(l, c, log), mountns.WithRemover(k.remover))...)
				w := tc.want[k.name]
				if got := c.Count(); got != w.scans {
					t.Errorf("scans = %d, want %d", got, w.scans)
				}
				if _, serr := os.Stat(l.Upper); serr != nil {
					t.Errorf("the layer's diff dir: %v", serr)
				}
				if w.held {
					checkHeld(t, err, l.holder, "rmdir")
					t.Log(err)
					if _, serr := os.Stat(l.Merged); serr != nil {
						t.Errorf("a held mount point was removed: %v", serr)
					}
					return
				}
				if err != nil {
					t.Fatalf("Unmount: %v", err)
				}
				if _, serr := os.Stat(l.Merged); !os.IsNotExist(serr) {
					t.Errorf("mount point still there: %v", serr)
				}
				if l.holder == nil {
					return
				}
				if tc.live {
					if !nstest.IsMountedIn(l.holder.PID, "/") || !strings.Contains(logText(hook), "root directory") {
						t.Errorf("the container's root was not kept and reported; log: %s", logText(hook))
					}
				} else if nstest.IsMountedIn(l.holder.PID, l.Merged) {
					t.Errorf("holder %d still has %s mounted", l.holder.PID, l.Merged)
				}
			})
		}
	}
}

// checkHeld checks that err is a *HeldError that names h's namespace and
// pid, says what to do, and keeps the kernel's errno.
func checkHeld(t *testing.T, err error, h *nstest.Holder, op string) *overlay2.HeldError {
	t.Helper()
	var he *overlay2.HeldError
	if !errors.As(err, &he) {
		t.Fatalf("err = %v, want a *HeldError", err)
	}
	msg := err.Error()
	for _, s := range []string{op, fmt.Sprintf("mnt:[%d]", h.Namespace), strconv.Itoa(h.PID)} {
		if !strings.Contains(msg, s) {
			t.Errorf("error does not say %q: %s", s, msg)
		}
	}
	if op == "rmdir" && !errors.Is(err, unix.EBUSY) {
		t.Errorf("errors.Is(err, EBUSY) = false: %v", err)
	}
	if op == "remove" && !errors.As(err, new(*mountns.DetachError)) {
		t.Errorf("no *mountns.DetachError in %v", err)
	}
	if !strings.Contains(msg, "stop") {
		t.Errorf("error does not say what to do: %s", msg)
	}
	return he
}

func logText(h *logtest.Hook) string {
	var b strings.Builder
	for _, e := range h.AllEntries() {
		s, _ := e.String()
		b.WriteString(s)
	}
	return b.String()
}

func TestBadInput(t *testing.T) {
	var layers overlay2.Layers // the driver's memory of live layers
	nstest.RequireRoot(t)
	old := mountns.WithRemover(nstest.OldKernel{})
	l := leaked(shim)(t)
	elsewhere := nstest.MountOverlay(t, filepath.Join(nstest.Dir(t), "elsewhere"))
	// A root that is a symlink to / passes a text check; an empty directory
	// outside every root that an rmdir through it would remove.
	slash := filepath.Join(nstest.Dir(t), "slash")
	empty := filepath.Join(nstest.Dir(t), "empty")
	if err := os.Symlink("/", slash); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(empty, 0o755); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	cases := []struct {
		name string
		call func() error
		want any
	}{
		{"mount point outside the home", func() error {
			return layers.Unmount(ctx, elsewhere.Merged, mountns.WithRoot(l.home), old)
		}, new(*mountns.OutsideRootError)},
		{"held mount point outside the home", func() error {
			return layers.RemoveMountpoint(ctx, l.Merged, mountns.WithRoot(elsewhere.Dir), old)
		}, new(*mountns.OutsideRootError)},
		{"relative mount point", func() error {
			return layers.Unmount(ctx, "overlay2/3f1c/merged", mountns.WithRoot(l.home), old)
		}, new(*mountns.PathError)},
		{"unclean mount point", func() error {
			return layers.RemoveMountpoint(ctx, l.Merged+"/../merged", mountns.WithRoot(l.home), old)
		}, new(*mountns.PathError)},
		{"no root", func() error {
			return layers.Unmount(ctx, l.Merged, old)
		}, new(*mountns.PathError)},
		{"layer directory outside the home", func() error {
			return layers.DetachLayer(ctx, elsewhere.Dir, mountns.WithRoot(l.home), old)
		}, new(*mountns.OutsideRootError)},
		{"home is a symlink to /: Unmount", func() error {
			return layers.Unmount(ctx, slash+elsewhere.Merged, mountns.WithRoot(slash), old)
		}, new(*mountns.PathError)},
		{"home is a symlink to /: RemoveMountpoint", func() error {
			return layers.RemoveMountpoint(ctx, slash+empty, mountns.WithRoot(slash), old)
		}, new(*mountns.PathError)},
		{"home is a symlink to /: DetachLayer", func() error {
			return layers.DetachLayer(ctx, slash+l.Dir, mountns.WithRoot(slash), old)
		}, new(*mountns.PathError)},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.call()
			if err == nil || !errors.As(err, tc.want) {
				t.Fatalf("err = %v, want %T", err, tc.want)
			}
		})
	}
	if !nstest.IsMountPoint(elsewhere.Merged) || !nstest.IsMountedIn(l.holder.PID, l.Merged) {
		t.Error("bad input touched a mount")
	}
	if _, err := os.Stat(empty); err != nil {
		t.Errorf("bad input removed a directory outside the root: %v", err)
	}
}

func TestDetachLayer(t *testing.T) {
	var layers overlay2.Layers // the driver's memory of live layers
	cases := []struct {
		name  string
		setup setup
		live  bool
	}{
		{"no holder", mounted, false},
		{"shim holds the merged dir", leaked(shim), false},
		{"running container on the layer", leaked(container), true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			nstest.RequireRoot(t)
			l := tc.setup(t)
			c := &nstest.Scans{}
			log, _ := logtest.NewNullLogger()
			err := layers.DetachLayer(context.Background(), l.Dir, opts(l, c, log)...)
			if c.Count() != 1 {
				t.Errorf("scans = %d, want 1", c.Count())
			}
			if !tc.live {
				if err != nil {
					t.Fatal(err)
				}
				if l.holder != nil && nstest.IsMountedIn(l.holder.PID, l.Merged) {
					t.Error("holder still has the layer mounted")
				}
				return
			}
			he := checkHeld(t, err, l.holder, "remove")
			if len(he.Live()) != 1 || !strings.Contains(err.Error(), "running container") {
				t.Errorf("not reported as a running container: %v", err)
			}
			if !nstest.IsMountedIn(l.holder.PID, "/") {
				t.Error("the container's root was detached")
			}
		})
	}
}

// TestConcurrent unmounts 32 layers at once, some held by a shim, and two
// callers race on one more.
func TestConcurrent(t *testing.T) {
	var layers overlay2.Layers // the driver's memory of live layers
	for _, k := range kernels {
		t.Run(k.name, func(t *testing.T) {
			nstest.RequireRoot(t)
			home := filepath.Join(nstest.Dir(t), "overlay2")
			var ls []nstest.Overlay
			for i := 0; i < 33; i++ {
				ls = append(ls, nstest.MountOverlay(t, filepath.Join(home, fmt.Sprintf("layer%02d", i))))
			}
			h := nstest.StartHolder(t, nstest.HolderSpec{})
			for i := 0; i < len(ls); i += 2 {
				if err := unix.Unmount(ls[i].Merged, unix.MNT_DETACH); err != nil {
					t.Fatal(err)
				}
			}
			nstest.Race(t, len(ls), func(i int) error {
				return layers.Unmount(context.Background(), ls[i].Merged, mountns.WithRoot(home), mountns.WithRemover(k.remover))
			})
			for _, l := range ls {
				if nstest.IsMountedIn(h.PID, l.Merged) {
					t.Errorf("holder still has %s", l.Merged)
				}
				if _, err := os.Stat(l.Merged); !os.IsNotExist(err) {
					t.Errorf("%s still there: %v", l.Merged, err)
				}
			}
		})
	}
}

// TestStillMountedHere: two mounts stacked on the mount point here; the
// unmount takes one, and the error must say the other is ours.
func TestStillMountedHere(t *testing.T) {
	var layers overlay2.Layers // the driver's memory of live layers
	nstest.RequireRoot(t)
	l := mounted(t)
	nstest.MountTmpfs(t, l.Merged)
	err := layers.Unmount(context.Background(), l.Merged, mountns.WithRoot(l.home))
	var he *overlay2.HeldError
	if !errors.As(err, &he) || !he.MountedHere || !strings.Contains(err.Error(), "unmount it here first") {
		t.Fatalf("err = %v, want a *HeldError saying it is mounted here", err)
	}
}

// TestLiveLayerKeepsMerged is the restore of a running container after a
// restart (moby's Get then Put of its layer, in the new namespace): once
// DetachLayer has seen a container running on the layer, Put's body drops
// this namespace's mount but keeps the merged directory, which runc exec
// needs as its working directory; once the container is gone, Put removes
// it again. On both kernels: the old one's rmdir is emulated.
func TestLiveLayerKeepsMerged(t *testing.T) {
	var layers overlay2.Layers // the driver's memory of live layers
	for _, oldKernel := range []bool{false, true} {
		t.Run(fmt.Sprintf("old kernel %v", oldKernel), func(t *testing.T) {
			nstest.RequireRoot(t)
			l := leaked(container)(t)
			c := &nstest.Scans{}
			log, _ := logtest.NewNullLogger()
			o := opts(l, c, log)
			if oldKernel {
				o = append(o, mountns.WithRemover(nstest.OldKernel{}))
			}
			if err := layers.DetachLayer(context.Background(), l.Dir, o...); err == nil || !layers.IsLive(l.Dir) {
				t.Fatalf("DetachLayer = %v, live %v; want the running container reported", err, layers.IsLive(l.Dir))
			}
			// What one driver found is its own: another driver's Layers, and
			// a nil one (layer.Retry's), know nothing of it.
			var other overlay2.Layers
			if other.IsLive(l.Dir) || (*overlay2.Layers)(nil).IsLive(l.Dir) {
				t.Error("another Layers sees the layer as live")
			}
			// The restored daemon mounts the layer again, then puts it.
			if err := unix.Mount("overlay", l.Merged, "overlay", 0, "lowerdir="+l.Lower+",upperdir="+l.Upper+",workdir="+l.Work); err != nil {
				t.Fatal(err)
			}
			scans := c.Count()
			if err := layers.Unmount(context.Background(), l.Merged, o...); err != nil {
				t.Fatal(err)
			}
			if nstest.IsMountPoint(l.Merged) {
				t.Error("this namespace's mount is still there")
			}
			if _, err := os.Stat(l.Merged); err != nil {
				t.Errorf("the merged directory of a running container's layer was removed: %v", err)
			}
			if c.Count() != scans {
				t.Error("Put of a live layer scanned")
			}
			if !nstest.IsMountedIn(l.holder.PID, "/") {
				t.Error("the container lost its root")
			}
			// The container stops: the next DetachLayer (Remove) sees it gone,
			// and the mount point goes.
			if err := l.holder.Stop(); err != nil {
				t.Fatal(err)
			}
			if err := layers.DetachLayer(context.Background(), l.Dir, o...); err != nil || layers.IsLive(l.Dir) {
				t.Fatalf("after the container: %v, live %v", err, layers.IsLive(l.Dir))
			}
			if err := layers.RemoveMountpoint(context.Background(), l.Merged, o...); err != nil {
				t.Fatal(err)
			}
			if _, err := os.Stat(l.Merged); !os.IsNotExist(err) {
				t.Errorf("merged not removed once the container is gone: %v", err)
			}
		})
	}
}

// brokenLister fails every listing: a scan that breaks before it has read
// any namespace.
type brokenLister struct{}

func (brokenLister) List(context.Context) ([]mountns.Namespace, error) {
	return nil, errors.New("listing mount namespaces: injected failure")
}

// TestDetachLayerFailedScanKeepsLive: a DetachLayer whose scan fails says
// nothing about the running container that the previous one found, so the
// next Put must still keep the layer's merged directory.
func TestDetachLayerFailedScanKeepsLive(t *testing.T) {
	var layers overlay2.Layers // the driver's memory of live layers
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	cases := []struct {
		name string
		ctx  context.Context
		opt  mountns.Option
	}{
		{"listing fails", context.Background(), mountns.WithLister(brokenLister{})},
		{"context cancelled", cancelled, mountns.WithLister(&nstest.Scans{})},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			nstest.RequireRoot(t)
			l := leaked(container)(t)
			log, _ := logtest.NewNullLogger()
			o := opts(l, &nstest.Scans{}, log)
			if err := layers.DetachLayer(context.Background(), l.Dir, o...); err == nil || !layers.IsLive(l.Dir) {
				t.Fatalf("DetachLayer = %v, live %v; want the running container reported", err, layers.IsLive(l.Dir))
			}
			err := layers.DetachLayer(tc.ctx, l.Dir, append(o, tc.opt)...)
			var he *overlay2.HeldError
			if err == nil || errors.As(err, &he) {
				t.Fatalf("DetachLayer with a failing scan = %v, want the scan's error", err)
			}
			if !layers.IsLive(l.Dir) {
				t.Error("a failed scan cleared the layer's live flag")
			}
			// The restored daemon's Put of the layer must keep merged.
			if err := unix.Mount("overlay", l.Merged, "overlay", 0, "lowerdir="+l.Lower+",upperdir="+l.Upper+",workdir="+l.Work); err != nil {
				t.Fatal(err)
			}
			if err := layers.Unmount(context.Background(), l.Merged, o...); err != nil {
				t.Fatal(err)
			}
			if _, err := os.Stat(l.Merged); err != nil {
				t.Errorf("the merged directory of a running container's layer was removed: %v", err)
			}
			// Leave no flag behind for other tests: the container stops and
			// a complete pass clears it.
			if err := l.holder.Stop(); err != nil {
				t.Fatal(err)
			}
			if err := layers.DetachLayer(context.Background(), l.Dir, o...); err != nil || layers.IsLive(l.Dir) {
				t.Fatalf("after the container: %v, live %v", err, layers.IsLive(l.Dir))
			}
		})
	}
}

func TestIsLayerID(t *testing.T) {
	for _, tc := range []struct {
		id   string
		want bool
	}{
		{"3f1c9a", true},
		{"3f1c9a-init", true},
		{"", false},
		{".", false},
		{"..", false},
		{"../x", false},
		{"a/b", false},
		{"a\x00b", false},
	} {
		if got := overlay2.IsLayerID(tc.id); got != tc.want {
			t.Errorf("IsLayerID(%q) = %v, want %v", tc.id, got, tc.want)
		}
	}
}
