package nstest

import (
	"bytes"
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/nsdetach/nsdetach/internal/procfs"
	"golang.org/x/sys/unix"
)

// Dir returns a fresh temporary directory and, when the test ends (after
// every other cleanup), fails the test if any mount namespace of the
// machine still has something mounted under it. The check reads
// /proc/*/mountinfo itself rather than trusting the code under test.
func Dir(t testing.TB) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "nsdetach-test-")
	if err != nil {
		t.Fatal(err)
	}
	dir, err = filepath.EvalSymlinks(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if leaks := MountsUnder(dir); len(leaks) > 0 {
			t.Errorf("mounts left under %s: %v", dir, leaks)
			return
		}
		if err := os.RemoveAll(dir); err != nil {
			t.Errorf("removing %s: %v", dir, err)
		}
	})
	return dir
}

// MountsUnder lists "pid:line" for every mountinfo line, in any process's
// namespace, that names dir.
func MountsUnder(dir string) []string {
	var out []string
	needle := []byte(" " + dir)
	eachNamespaceLine(func(pid int, line []byte) {
		if bytes.Contains(line, needle) {
			out = append(out, strconv.Itoa(pid)+": "+string(line))
		}
	})
	return out
}

// eachNamespaceLine calls fn with every mountinfo line of every mount
// namespace that has a process, read once per namespace through its first
// process.
func eachNamespaceLine(fn func(pid int, line []byte)) {
	pids, _ := filepath.Glob("/proc/[0-9]*/mountinfo")
	seen := map[uint64]bool{}
	for _, p := range pids {
		pid, _ := strconv.Atoi(filepath.Base(filepath.Dir(p)))
		ino, err := NamespaceOf(pid)
		if err != nil || seen[ino] {
			continue
		}
		seen[ino] = true
		b, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		for _, line := range bytes.Split(b, []byte("\n")) {
			fn(pid, line)
		}
	}
}

// MountTmpfs mounts a tmpfs on dir (created if missing) in the test's
// namespace and unmounts it when the test ends, unless it is gone by then.
func MountTmpfs(t testing.TB, dir string) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount("tmpfs", dir, "tmpfs", 0, "size=64k"); err != nil {
		t.Fatalf("mount tmpfs on %s: %v", dir, err)
	}
	t.Cleanup(func() { unmountIfMounted(t, dir) })
}

// Overlay is an overlay mount laid out as moby's overlay2 lays out a layer:
// <dir>/diff (upper), <dir>/work, <dir>/merged, over <dir>/lower.
type Overlay struct {
	Dir, Lower, Upper, Work, Merged string
}

// MountOverlay builds a one-file lower layer and mounts an overlay on <dir>/merged in the test's namespace; the mount is
// removed when the test ends, unless it is gone by then.
func MountOverlay(t testing.TB, dir string) Overlay {
	t.Helper()
	o := Overlay{Dir: dir, Lower: filepath.Join(dir, "lower"), Upper: filepath.Join(dir, "diff"),
		Work: filepath.Join(dir, "work"), Merged: filepath.Join(dir, "merged")}
	for _, d := range []string{o.Lower, o.Upper, o.Work, o.Merged} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	// One os.WriteFile, not continuity's fstest: this package is part of the
	// module moby vendors, whose requirements are only what the library needs.
	if err := os.WriteFile(filepath.Join(o.Lower, "hello"), []byte("layer\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	opts := "lowerdir=" + o.Lower + ",upperdir=" + o.Upper + ",workdir=" + o.Work
	if err := unix.Mount("overlay", o.Merged, "overlay", 0, opts); err != nil {
		t.Skipf("overlayfs is not available here (mount: %v)", err)
	}
	t.Cleanup(func() { unmountIfMounted(t, o.Merged) })
	return o
}

// IsMountPoint reports whether dir is a mount point in the test's
// namespace.
func IsMountPoint(dir string) bool {
	return mountedIn("/proc/self/mountinfo", dir)
}

// IsMountedIn reports whether dir is a mount point in pid's view.
func IsMountedIn(pid int, dir string) bool {
	return mountedIn("/proc/"+strconv.Itoa(pid)+"/mountinfo", dir)
}

func mountedIn(mountinfo, dir string) bool {
	b, err := os.ReadFile(mountinfo)
	if err != nil {
		return false
	}
	for _, line := range bytes.Split(b, []byte("\n")) {
		f := bytes.Fields(line)
		if len(f) > 4 && string(f[4]) == procfs.EscapeMountinfo(dir) {
			return true
		}
	}
	return false
}

func unmountIfMounted(t testing.TB, dir string) {
	for IsMountPoint(dir) {
		if err := unix.Unmount(dir, unix.MNT_DETACH); err != nil {
			t.Errorf("cleanup: unmount %s: %v", dir, err)
			return
		}
	}
}
