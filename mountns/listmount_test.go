package mountns_test

import (
	"context"
	"reflect"
	"testing"

	"github.com/nsdetach/nsdetach/internal/nstest"
	"github.com/nsdetach/nsdetach/mountns"
)

// scanPaths are the two ways a scan reads the table of a namespace that no
// process is in: listmount and statmount by namespace id (Linux 6.13+), and
// entering it to read its mountinfo (every kernel with the nsfs walk),
// forced with WithoutListmount.
var scanPaths = []struct {
	name string
	opts []mountns.Option
}{
	{"statmount", nil},
	{"entered", []mountns.Option{mountns.WithoutListmount()}},
}

// TestScanPathsAgree: for every fixture whose namespace is left with no
// process (pinned by a bind mount of its nsfs file), statmount by namespace
// id and entering the namespace give the same holder, mount for mount; the
// statmount read also has the unique ids, which tells that it ran (the
// entered read has them only through a process's root).
func TestScanPathsAgree(t *testing.T) {
	nstest.RequireRoot(t)
	if !mountns.HasListmount() {
		t.Skip("kernel lacks listmount/statmount by namespace id with the mount source (6.13+): only entering the namespace exists")
	}
	for name, build := range fixtures {
		t.Run(name, func(t *testing.T) {
			f := build(t)
			pinNamespace(t, f.holder.PID)
			if err := f.holder.Stop(); err != nil {
				t.Fatal(err)
			}
			var got [2][]mountns.Holder
			for i, p := range scanPaths {
				holders, err := mountns.FindHolders(context.Background(), f.target, p.opts...)
				if err != nil || len(holders) != 1 || len(holders[0].PIDs) != 0 || holders[0].Inode != f.holder.Namespace {
					t.Fatalf("%s: want the pinned namespace with no pids, got %+v, %v", p.name, holders, err)
				}
				got[i] = holders
			}
			if m := got[0][0].Mounts; len(m) != 1 || m[0].UniqueID == 0 {
				t.Errorf("statmount: want the mount with its unique id, got %+v", m)
			}
			if m := got[1][0].Mounts; len(m) != 1 || m[0].UniqueID != 0 {
				t.Errorf("entered: want the mount without a unique id (none from a process's root), got %+v", m)
			}
			for i := range got[0][0].Mounts {
				got[0][0].Mounts[i].UniqueID = 0
			}
			if !reflect.DeepEqual(got[0], got[1]) {
				t.Errorf("the reads disagree:\nstatmount %+v\nentered   %+v", got[0], got[1])
			}
		})
	}
}
