package snapshotter_test

import (
	"testing"

	"github.com/nsdetach/nsdetach/internal/nstest"
)

func TestMain(m *testing.M) { nstest.Main(m) }
