package mobydriver_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/docker/docker/daemon/graphdriver/graphtest"
	"github.com/nsdetach/nsdetach/internal/nstest"
	"github.com/nsdetach/nsdetach/overlay2/mobydriver"
)

// TestConformance runs moby's graphdriver conformance suite against the
// wrapper, and against moby's stock overlay2 as the control.
func TestConformance(t *testing.T) {
	for _, name := range []string{mobydriver.Name, "overlay2"} {
		t.Run(name, func(t *testing.T) {
			nstest.RequireRoot(t)
			d := graphtest.GetDriver(t, name)
			defer graphtest.PutDriver(t)
			if wrapped := fmt.Sprint(d.Status()); strings.Contains(wrapped, "nsdetach") != (name == mobydriver.Name) {
				t.Fatalf("%s: wrong driver under test: %s", name, wrapped)
			}
			t.Run("CreateEmpty", func(t *testing.T) { graphtest.DriverTestCreateEmpty(t, name) })
			t.Run("CreateBase", func(t *testing.T) { graphtest.DriverTestCreateBase(t, name) })
			t.Run("CreateSnap", func(t *testing.T) { graphtest.DriverTestCreateSnap(t, name) })
			t.Run("DeepLayerRead", func(t *testing.T) { graphtest.DriverTestDeepLayerRead(t, 128, name) })
			t.Run("DiffApply", func(t *testing.T) { graphtest.DriverTestDiffApply(t, 10, name) })
			t.Run("Changes", func(t *testing.T) { graphtest.DriverTestChanges(t, name) })
		})
	}
}
