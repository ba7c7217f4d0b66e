package overlay2_test

import (
	"context"
	"sync/atomic"
	"testing"

	"github.com/nsdetach/nsdetach/internal/nstest"
	"github.com/nsdetach/nsdetach/mountns"
	"github.com/nsdetach/nsdetach/overlay2"
	"golang.org/x/sys/unix"
)

func TestMain(m *testing.M) { nstest.Main(m) }

// counter is a Lister that counts scans.
type counter struct{ n atomic.Int32 }

func (c *counter) List(ctx context.Context) ([]mountns.Namespace, error) {
	c.n.Add(1)
	return mountns.SystemLister{}.List(ctx)
}

// kernels are the two rmdir semantics every EBUSY path is run under.
var kernels = []struct {
	name  string
	rmdir func(string) error
}{
	{"new kernel", unix.Rmdir},
	{"old kernel", nstest.OldKernelRmdir},
}

// useKernel makes the package answer rmdir as kernel k for one test.
func useKernel(t *testing.T, rmdir func(string) error) {
	t.Cleanup(overlay2.SetRmdir(rmdir))
}
