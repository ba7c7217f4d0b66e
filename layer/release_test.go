package layer_test

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
	"github.com/nsdetach/nsdetach/layer"
	"github.com/nsdetach/nsdetach/mountns"
	"github.com/sirupsen/logrus"
	logtest "github.com/sirupsen/logrus/hooks/test"
	"golang.org/x/sys/unix"
)

func TestMain(m *testing.M) { nstest.Main(m) }

var quiet = mountns.WithLogger(func() *logrus.Logger { l, _ := logtest.NewNullLogger(); return l }())

// rwLayer is a container's layer laid out as moby's overlay2 does it:
// home/<id> (mounted on merged) and home/<id>-init.
type rwLayer struct {
	home, id string
	nstest.Overlay
	holders []*nstest.Holder
}

func newLayer(t *testing.T) rwLayer {
	home := filepath.Join(nstest.Dir(t), "overlay2")
	l := rwLayer{home: home, id: "3f1c"}
	if err := os.MkdirAll(filepath.Join(home, l.id+"-init", "diff"), 0o755); err != nil {
		t.Fatal(err)
	}
	l.Overlay = nstest.MountOverlay(t, filepath.Join(home, l.id))
	return l
}

// hold starts a holder of the layer's mount, then drops the mount here,
// as a daemon restarted into a new namespace sees it.
func (l *rwLayer) hold(t *testing.T, specs ...nstest.HolderSpec) {
	for _, s := range specs {
		l.holders = append(l.holders, nstest.StartHolder(t, s))
	}
	if err := unix.Unmount(l.Merged, unix.MNT_DETACH); err != nil {
		t.Fatal(err)
	}
}

// release is moby's driver.Remove of both directories as a kernel without
// detach-on-rmdir answers it; calls counts the attempts.
func (l *rwLayer) release(calls *int) func() error {
	return func() error {
		*calls++
		_ = unix.Unmount(l.Merged, unix.MNT_DETACH) // moby's EnsureRemoveAll unmounts here first
		for _, d := range []string{filepath.Join(l.home, l.id), filepath.Join(l.home, l.id+"-init")} {
			if err := nstest.OldKernelRemoveAll(d); err != nil {
				return err
			}
		}
		return nil
	}
}

func TestRetry(t *testing.T) {
	shim := nstest.HolderSpec{}
	cases := []struct {
		name  string
		hold  func(l *rwLayer) []nstest.HolderSpec
		calls int
		scans int
		// the error must say this; "" for success
		err string
	}{
		{"no holder: fast path", nil, 1, 0, ""},
		{"shim holds the merged dir", func(*rwLayer) []nstest.HolderSpec { return []nstest.HolderSpec{shim} }, 2, 1, ""},
		{"running container on the layer", func(l *rwLayer) []nstest.HolderSpec {
			return []nstest.HolderSpec{shim, {PivotRoot: l.Merged}}
		}, 1, 1, "running container"},
		{"locked copy in a user namespace", func(*rwLayer) []nstest.HolderSpec {
			return []nstest.HolderSpec{{UserNS: true}}
		}, 1, 1, "locked by a user namespace"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			nstest.RequireRoot(t)
			l := newLayer(t)
			if tc.hold != nil {
				l.hold(t, tc.hold(&l)...)
			}
			n := &nstest.Scans{}
			calls := 0
			err := layer.Retry(context.Background(), l.home, l.id, l.release(&calls), mountns.WithLister(n), quiet)
			if calls != tc.calls || n.Count() != tc.scans {
				t.Errorf("release ran %d times after %d scans, want %d after %d", calls, n.Count(), tc.calls, tc.scans)
			}
			if tc.err == "" {
				if err != nil {
					t.Fatal(err)
				}
				if _, err := os.Stat(l.Dir); !os.IsNotExist(err) {
					t.Errorf("layer directory still there: %v", err)
				}
				return
			}
			t.Log(err)
			var re *layer.ReleaseError
			if !errors.As(err, &re) || !layer.IsBusy(err) {
				t.Fatalf("err = %v, want a busy *ReleaseError", err)
			}
			h := l.holders[len(l.holders)-1]
			for _, s := range []string{l.id, tc.err, fmt.Sprintf("mnt:[%d]", h.Namespace), strconv.Itoa(h.PID), "can be released again"} {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error does not say %q: %v", s, err)
				}
			}
			if _, err := os.Stat(l.Upper); err != nil {
				t.Errorf("the layer's diff dir: %v", err)
			}
		})
	}
}

func TestRetryPassesOtherErrors(t *testing.T) {
	nstest.RequireRoot(t)
	l := newLayer(t)
	n := &nstest.Scans{}
	want := &os.PathError{Op: "unlinkat", Path: l.Upper, Err: unix.EACCES}
	err := layer.Retry(context.Background(), l.home, l.id, func() error { return want }, mountns.WithLister(n))
	if err != want || n.Count() != 0 {
		t.Errorf("err = %v after %d scans, want %v unchanged and no scan", err, n.Count(), want)
	}
}

func TestDetachLayerBadInput(t *testing.T) {
	nstest.RequireRoot(t)
	l := newLayer(t)
	l.hold(t, nstest.HolderSpec{})
	ctx := context.Background()
	cases := []struct {
		name, home, id string
		want           []string
	}{
		{"layer that does not exist", l.home, "0000", []string{"0000", "does not exist", "check the id"}},
		{"id that climbs out of the home", l.home, "../" + filepath.Base(l.home) + "/" + l.id, []string{"not a layer id"}},
		{"empty id", l.home, "", []string{"not a layer id"}},
		{"relative home", "overlay2", l.id, []string{"driver home", "absolute"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := layer.DetachLayer(ctx, tc.home, tc.id, quiet)
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
	if !nstest.IsMountedIn(l.holders[0].PID, l.Merged) {
		t.Error("bad input detached the layer")
	}
	t.Run("outside the allowed root", func(t *testing.T) {
		if err := os.Mkdir(filepath.Join(l.home, "other"), 0o755); err != nil {
			t.Fatal(err)
		}
		err := layer.DetachLayer(ctx, l.home, l.id, mountns.WithRoot(filepath.Join(l.home, "other")), quiet)
		if !errors.As(err, new(*mountns.OutsideRootError)) {
			t.Errorf("err = %v, want an *OutsideRootError", err)
		}
	})
	if err := layer.DetachLayer(ctx, l.home, l.id, quiet); err != nil {
		t.Fatal(err)
	}
	if nstest.IsMountedIn(l.holders[0].PID, l.Merged) {
		t.Error("the holder still has the layer")
	}
}
