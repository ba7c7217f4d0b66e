package overlay2_test

import (
	"testing"

	"github.com/nsdetach/nsdetach/internal/nstest"
	"github.com/nsdetach/nsdetach/mountns"
)

func TestMain(m *testing.M) { nstest.Main(m) }

// kernels are the two rmdir semantics every EBUSY path is run under.
var kernels = []struct {
	name    string
	remover mountns.Remover
}{
	{"new kernel", mountns.SystemRemover{}},
	{"old kernel", nstest.OldKernel{}},
}
