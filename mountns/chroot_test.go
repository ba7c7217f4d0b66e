package mountns_test

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nsdetach/nsdetach/internal/nstest"
	"github.com/nsdetach/nsdetach/mountns"
)

// TestChrootBelowItsOwnMount: a holder chrooted into a directory of a tmpfs
// that only its namespace has. readlink /proc/PID/root gives the path in
// the holder's namespace; in the caller's view that path is another, plain
// directory. The link must not place the holder's root there: its mount is
// not the caller's directory of the same name, and is not detached as if it
// were; where the holder is listed, its root is unknown, and says why.
func TestChrootBelowItsOwnMount(t *testing.T) {
	nstest.RequireRoot(t)
	dir := nstest.Dir(t)
	own := filepath.Join(dir, "x")               // a tmpfs in the holder's namespace only
	jail := filepath.Join(own, "jail")           // the holder's root
	inJail := filepath.Join(jail, "data", "mnt") // a tmpfs inside it, "/data/mnt" there
	// The caller's view has plain directories with the same names.
	mkdirs(t, inJail)
	h := nstest.StartHolder(t, nstest.HolderSpec{Tmpfs: []string{own, inJail}, Chroot: jail})
	if !nstest.IsMountedIn(h.PID, "/data/mnt") {
		t.Fatal("fixture: the holder lacks /data/mnt")
	}

	root := filepath.Join(jail, "data")
	rep, err := mountns.DetachAll(context.Background(), inJail, mountns.WithRoot(root))
	if err != nil {
		t.Fatalf("DetachAll: %v", err)
	}
	if len(rep.Namespaces) != 0 {
		t.Errorf("the holder's /data/mnt was taken for the caller's %s: %+v", inJail, rep.Namespaces)
	}
	if !nstest.IsMountedIn(h.PID, "/data/mnt") {
		t.Error("the holder's mount was detached as if it were the caller's directory")
	}

	// Found by an overlay's upperdir instead, which names the caller's
	// directories whatever the holder's root, the holder says that its
	// root is unknown, and why.
	layer := filepath.Join(dir, "layer")
	mkdirs(t, filepath.Join(layer, "lower"), filepath.Join(layer, "diff"), filepath.Join(layer, "work"))
	inHolder(t, h, fmt.Sprintf("mkdir -p %[1]s/ovl; mount -t overlay overlay -o lowerdir=%[2]s/lower,upperdir=%[2]s/diff,workdir=%[2]s/work %[1]s/ovl", jail, layer))
	holders, err := mountns.FindHolders(context.Background(), layer)
	if err != nil || len(holders) != 1 || holders[0].Mounts[0].Mountpoint != "/ovl" {
		t.Fatalf("want the holder by its overlay at /ovl: %+v, %v", holders, err)
	}
	if hd := holders[0]; hd.Root != "" || !strings.Contains(hd.RootUnknown, "another directory in the caller's view") {
		t.Errorf("holder root %q, unknown %q; want no root, and why", hd.Root, hd.RootUnknown)
	}
}
