package mountns_test

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/nsdetach/nsdetach/internal/nstest"
	"github.com/nsdetach/nsdetach/mountns"
	"golang.org/x/sys/unix"
)

// TestDetachLosesRaceToAnotherCleaner: another cleaner (a patched dockerd,
// serve --detach-stale) detaches the mount between this pass's check and
// its umount2, which then answers EINVAL. Nothing remains: the mount is
// gone, not failed, and no "locked mount" is blamed.
func TestDetachLosesRaceToAnotherCleaner(t *testing.T) {
	nstest.RequireRoot(t)
	f := fixtures["tmpfs mounted only in the holder"](t)
	rep, err := mountns.DetachAll(context.Background(), f.target, mountns.WithRoot(f.root), mountns.LoseUmountRace())
	if err != nil {
		t.Fatalf("nothing remains, so no error; got %v", err)
	}
	r := rep.Namespaces[0].Result[0]
	if r.Action != mountns.Gone || r.Remains || strings.Contains(r.Reason, "locked") {
		t.Errorf("result %s remains=%v %q, want gone, detached by someone else", r.Action, r.Remains, r.Reason)
	}
	if mountedInHolder(f.holder, f.view) {
		t.Error("the holder still has the mount")
	}
}

// TestConcurrentCleaners: two DetachAll of one holder's mount at once, many
// times over (the race above, unforced: it lost about 1 round in 60). Both
// must succeed every time.
func TestConcurrentCleaners(t *testing.T) {
	nstest.RequireRoot(t)
	const rounds = 40
	f := fixtures["tmpfs mounted only in the holder"](t)
	for i := 0; i < rounds; i++ {
		if i > 0 {
			if err := f.holder.Remount(); err != nil {
				t.Fatal(err)
			}
		}
		var wg sync.WaitGroup
		errs := make([]error, 2)
		for c := range errs {
			wg.Add(1)
			go func(c int) {
				defer wg.Done()
				_, errs[c] = mountns.DetachAll(context.Background(), f.target, mountns.WithRoot(f.root))
			}(c)
		}
		wg.Wait()
		for c, err := range errs {
			if err != nil {
				t.Fatalf("round %d, cleaner %d: %v", i, c, err)
			}
		}
		if mountedInHolder(f.holder, f.view) {
			t.Fatalf("round %d: the holder still has the mount", i)
		}
	}
}

// TestRereadFailsAfterDetach: when the table cannot be read again after
// the pass, the mounts that umount2 detached are reported detached (and
// not remaining); the failed re-read is the namespace's error.
func TestRereadFailsAfterDetach(t *testing.T) {
	nstest.RequireRoot(t)
	root := filepath.Join(nstest.Dir(t), "docker")
	a, b := filepath.Join(root, "a"), filepath.Join(root, "b")
	mkdirs(t, a, b)
	h := nstest.StartHolder(t, nstest.HolderSpec{Tmpfs: []string{a, b}})
	rep, err := mountns.DetachAll(context.Background(), root, mountns.WithRoot(root), mountns.FailReread(unix.EIO))
	var de *mountns.DetachError
	if !errors.As(err, &de) || !errors.Is(err, unix.EIO) || !strings.Contains(err.Error(), "re-reading") {
		t.Errorf("want a DetachError naming the failed re-read, got %v", err)
	}
	if len(rep.Namespaces) != 1 || len(rep.Namespaces[0].Result) != 2 {
		t.Fatalf("report %+v", rep)
	}
	for _, r := range rep.Namespaces[0].Result {
		if r.Action != mountns.Detached || r.Remains {
			t.Errorf("%s: %s remains=%v %q, want detached", r.Mountpoint, r.Action, r.Remains, r.Reason)
		}
	}
	if nstest.IsMountedIn(h.PID, a) || nstest.IsMountedIn(h.PID, b) {
		t.Error("the holder still has a mount")
	}
}
