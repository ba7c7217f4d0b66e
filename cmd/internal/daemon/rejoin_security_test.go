package daemon_test

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/nsdetach/nsdetach/internal/nstest"
)

// container is a fake container started by startContainer: an overlay
// layer under the data root, and a root process pivot_rooted into it.
type container struct {
	nstest.Overlay
	*nstest.Holder
}

// startContainer starts what a root process in an ordinary container (no
// user namespace remap) can look like: pivot_rooted into an overlay whose
// upperdir is DATA/overlay2/ID/diff, renamed containerd-shim-runc-v2 and
// started with "-namespace ns", and with files of its own choosing in its
// image: files maps a path in the container to its content, and every file
// is executable. /bin/sh in the image is busybox, so that a script there
// runs.
func startContainer(t *testing.T, root, id, ns string, files map[string]string) container {
	t.Helper()
	o := nstest.MountOverlay(t, filepath.Join(root, "overlay2", id))
	busybox, err := os.ReadFile("/bin/busybox")
	if err != nil {
		t.Skipf("needs busybox-static for a shell inside the fake container: %v", err)
	}
	files["/bin/sh"] = string(busybox)
	for name, content := range files {
		p := filepath.Join(o.Merged, name)
		mkdirs(t, filepath.Dir(p))
		if err := os.WriteFile(p, []byte(content), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	h := nstest.StartHolder(t, nstest.HolderSpec{PivotRoot: o.Merged, Comm: "containerd-shim-runc-v2",
		Args: []string{"-namespace", ns, "-id", id, "-address", "/run/containerd/containerd.sock"}})
	return container{Overlay: o, Holder: h}
}

// TestRejoinContainerEscape is the attack on rejoin from inside a
// container: a root process there names itself like a shim of the engine,
// and puts a file at DOCKERD's path in its image. With the engine's real
// shims in the host's namespace (or none), the container's namespace is the
// only one that looks like the old engine's. rejoin must start the real
// DOCKERD, in its own namespace, and never the container's file.
func TestRejoinContainerEscape(t *testing.T) {
	nstest.RequireRoot(t)
	dir := nstest.Dir(t)
	root := filepath.Join(dir, "docker")
	// DOCKERD, in rejoin's view, is a shell; in the container's image the
	// same path holds the attacker's program.
	dockerd := filepath.Join(dir, "usr", "bin", "dockerd")
	mkdirs(t, root, filepath.Dir(dockerd))
	if err := os.Symlink("/bin/sh", dockerd); err != nil {
		t.Fatal(err)
	}
	c := startContainer(t, root, "c1", testContainerdNamespace, map[string]string{
		dockerd: "#!/bin/sh\necho attacker-ran\n",
	})
	own, err := nstest.NamespaceOf(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	out, errOut, err := runRejoinHelper(t, dir, root, []string{dockerd, "-c", "echo engine-ran; readlink /proc/self/ns/mnt"})
	if err != nil {
		t.Fatalf("helper: %v\nstdout %s\nstderr %s", err, out, errOut)
	}
	if strings.Contains(out, "attacker-ran") {
		t.Fatalf("rejoin ran the container's %s as root (container mnt:[%d]); decision: %s", dockerd, c.Namespace, errOut)
	}
	if want := "engine-ran\nmnt:[" + strconv.FormatUint(own, 10) + "]\n"; out != want {
		t.Errorf("the exec'd DOCKERD printed %q, want %q (stderr %q)", out, want, errOut)
	}
}
