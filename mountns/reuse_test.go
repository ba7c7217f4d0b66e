package mountns_test

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nsdetach/nsdetach/internal/nstest"
	"github.com/nsdetach/nsdetach/mountns"
	"golang.org/x/sys/unix"
)

// TestMountIDReusedBetweenScanAndDetach: the scanned mount goes, and a new
// mount of the same filesystem at the same place gets its mount id (the
// kernel hands out the lowest free one). Mount id and device both match;
// only the 64-bit unique id tells them apart, and the new mount must not be
// detached.
func TestMountIDReusedBetweenScanAndDetach(t *testing.T) {
	nstest.RequireRoot(t)
	if !mountns.HasUniqueMountIDs() {
		t.Skip("kernel lacks STATX_MNT_ID_UNIQUE (6.8+): mount ids are all there is")
	}
	dir := nstest.Dir(t)
	root := filepath.Join(dir, "docker")
	target := filepath.Join(root, "vol")
	scanned, newcomer := filepath.Join(dir, "scanned"), filepath.Join(dir, "newcomer")
	mkdirs(t, target, scanned, newcomer)
	h := nstest.StartHolder(t, nstest.HolderSpec{})

	var id int
	if err := nstest.InNamespace(h.PID, func() error {
		if err := unix.Mount(scanned, target, "", unix.MS_BIND, ""); err != nil {
			return err
		}
		var err error
		id, err = mountIDAt(target)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	holders, err := mountns.FindHolders(context.Background(), target)
	if err != nil || len(holders) != 1 || holders[0].Mounts[0].ID != id || holders[0].Mounts[0].UniqueID == 0 {
		t.Fatalf("scan: want mount %d with its unique id, got %+v, %v", id, holders, err)
	}

	// The scanned mount goes; new bind mounts of the same filesystem are
	// stacked on the target until one gets the freed id (each keeps the id
	// it got, so the lowest free ids fill up).
	reused := false
	if err := nstest.InNamespace(h.PID, func() error {
		if err := unix.Unmount(target, 0); err != nil {
			return err
		}
		for i := 0; i < 20000 && !reused; i++ {
			if err := unix.Mount(newcomer, target, "", unix.MS_BIND, ""); err != nil {
				return err
			}
			got, err := mountIDAt(target)
			if err != nil {
				return err
			}
			reused = got == id
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if !reused {
		t.Skipf("mount id %d went to another process's mount each time", id)
	}

	rep, err := mountns.DetachHolders(context.Background(), target, holders, mountns.WithRoot(root))
	var de *mountns.DetachError
	if !errors.As(err, &de) {
		t.Errorf("want a DetachError reporting the refusal, got %v", err)
	}
	if r := rep.Namespaces[0].Result[0]; r.Action != mountns.Refused || !strings.Contains(r.Reason, "unique mount id") {
		t.Errorf("result %s %q, want refused by its unique id", r.Action, r.Reason)
	}
	if err := nstest.InNamespace(h.PID, func() error {
		if got, err := mountIDAt(target); err != nil || got != id {
			return fmt.Errorf("the mount that reused id %d was detached: now %d, %v", id, got, err)
		}
		return nil
	}); err != nil {
		t.Error(err)
	}
}

// mountIDAt is the (reusable) mount id of the mount on top at p.
func mountIDAt(p string) (int, error) {
	var stx unix.Statx_t
	if err := unix.Statx(unix.AT_FDCWD, p, unix.AT_SYMLINK_NOFOLLOW, unix.STATX_MNT_ID, &stx); err != nil {
		return 0, err
	}
	return int(stx.Mnt_id), nil
}
