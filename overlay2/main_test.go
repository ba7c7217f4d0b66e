package overlay2_test

import (
	"testing"

	"github.com/nsdetach/nsdetach/internal/nstest"
	"github.com/nsdetach/nsdetach/overlay2"
	"golang.org/x/sys/unix"
)

func TestMain(m *testing.M) { nstest.Main(m) }

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
