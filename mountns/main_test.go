package mountns_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/nsdetach/nsdetach/internal/nstest"
	"github.com/nsdetach/nsdetach/mountns"
	"golang.org/x/sys/unix"
)

// detachEnv makes the test binary run one DetachAll ("TARGET ROOT") and
// print its outcome, for tests that need it in a process with fewer
// privileges.
const detachEnv = "MOUNTNS_TEST_DETACH"

func TestMain(m *testing.M) {
	if args := os.Getenv(detachEnv); args != "" {
		f := strings.SplitN(args, " ", 2)
		_, err := mountns.DetachAll(context.Background(), f[0], mountns.WithRoot(f[1]))
		fmt.Printf("eperm=%v err=%v\n", errors.Is(err, unix.EPERM), err)
		os.Exit(0)
	}
	nstest.Main(m)
}
