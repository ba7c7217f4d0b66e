package mobydriver_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/docker/docker/daemon/graphdriver"
	mobyoverlay2 "github.com/docker/docker/daemon/graphdriver/overlay2"
	"github.com/moby/sys/user"
	"github.com/nsdetach/nsdetach/internal/nstest"
	"github.com/nsdetach/nsdetach/overlay2/mobydriver"
	"golang.org/x/sys/unix"
)

// oldKernelPut is moby's overlay2 whose Put ends as on a kernel without
// detach-on-rmdir while a holder has the layer mounted: the rmdir of the
// merged directory fails and the directory stays, the holder's copy with it.
// It makes the rmdir fail with a file in the directory under the mount
// (reached through a non-recursive bind of the layer directory, which does
// not carry the mount), and takes the file away after moby's Put.
type oldKernelPut struct {
	graphdriver.Driver
	t    *testing.T
	home string
	held func() bool
}

func (d oldKernelPut) Put(id string) error {
	if !d.held() {
		return d.Driver.Put(id)
	}
	d.underMount(id, func(p string) error { return os.WriteFile(p, nil, 0o600) })
	err := d.Driver.Put(id)
	d.underMount(id, os.Remove)
	return err
}

func (d oldKernelPut) underMount(id string, f func(string) error) {
	scratch := d.t.TempDir()
	if err := unix.Mount(filepath.Join(d.home, id), scratch, "", unix.MS_BIND, ""); err != nil {
		d.t.Fatal(err)
	}
	defer unix.Unmount(scratch, unix.MNT_DETACH)
	p := filepath.Join(scratch, "merged", ".busy")
	if err := f(p); err != nil {
		d.t.Fatal(err)
	}
}

// TestPutOnOldKernel: moby's Put leaves the merged directory and the
// holder's mount behind; the wrapper's Put finishes the job.
func TestPutOnOldKernel(t *testing.T) {
	for _, wrapped := range []bool{false, true} {
		name := map[bool]string{false: "stock overlay2 leaves it", true: mobydriver.Name + " removes it"}[wrapped]
		t.Run(name, func(t *testing.T) {
			nstest.RequireRoot(t)
			home, _ := newHome(t)
			inner, err := mobyoverlay2.Init(home, nil, user.IdentityMapping{})
			if err != nil {
				t.Fatal(err)
			}
			merged := filepath.Join(home, "c1", "merged")
			var h *nstest.Holder
			var d graphdriver.Driver = oldKernelPut{Driver: inner, t: t, home: home,
				held: func() bool { return h != nil && nstest.IsMountedIn(h.PID, merged) }}
			if wrapped {
				d = mobydriver.New(d, home, nil)
			}
			if _, err := d.Get("c1", ""); err != nil {
				t.Fatal(err)
			}
			h = nstest.StartHolder(t, nstest.HolderSpec{})
			if err := d.Put("c1"); err != nil {
				t.Fatal(err)
			}
			_, statErr := os.Stat(merged)
			gone := os.IsNotExist(statErr) && !nstest.IsMountedIn(h.PID, merged)
			if gone != wrapped {
				t.Errorf("merged gone everywhere = %v, want %v", gone, wrapped)
			}
		})
	}
}
