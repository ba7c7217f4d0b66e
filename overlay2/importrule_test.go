package overlay2_test

import (
	"os/exec"
	"strings"
	"testing"
)

// TestImportRule checks the import rule of docs/architecture.md: what the patch series calls is
// vendored into moby, so it must not import moby back.
func TestImportRule(t *testing.T) {
	pkgs := []string{"github.com/nsdetach/nsdetach/overlay2", "github.com/nsdetach/nsdetach/layer",
		"github.com/nsdetach/nsdetach/daemon", "github.com/nsdetach/nsdetach/mountns", "github.com/nsdetach/nsdetach/snapshotter"}
	out, err := exec.Command("go", append([]string{"list", "-deps", "-f", "{{.ImportPath}}"}, pkgs...)...).CombinedOutput()
	if err != nil {
		t.Skipf("go list: %v: %s", err, out)
	}
	for _, p := range strings.Fields(string(out)) {
		if strings.HasPrefix(p, "github.com/docker/docker/") || strings.HasPrefix(p, "github.com/moby/moby/") {
			t.Errorf("%s is imported by the packages the patch series calls", p)
		}
	}
}
