package replay_test

import (
	"testing"

	"github.com/nsdetach/nsdetach/integration/oldkernel"
	"github.com/nsdetach/nsdetach/integration/replay"
	"github.com/nsdetach/nsdetach/internal/nstest"
)

func TestMain(m *testing.M) {
	// The node and the daemons of a replay are this binary under the
	// emulator: the emulator's child and the roles take over here.
	oldkernel.Init()
	replay.Init()
	nstest.Main(m)
}
