package nstest

import (
	"bytes"
	"os"
	"sort"
	"strconv"
	"strings"

	"github.com/nsdetach/nsdetach/internal/paths"
	"golang.org/x/sys/unix"
)

// MountpointsAnywhere returns, deepest first, the mount points at or below
// dir in any process's view (mountinfo field 5, unescaped), for holders
// whose root is the test's.
func MountpointsAnywhere(dir string) []string {
	seen := map[string]bool{}
	eachNamespaceLine(func(_ int, line []byte) {
		f := bytes.Fields(line)
		if len(f) < 5 {
			return
		}
		if mp := unescape(string(f[4])); paths.Within(mp, dir) {
			seen[mp] = true
		}
	})
	out := make([]string, 0, len(seen))
	for mp := range seen {
		out = append(out, mp)
	}
	sort.Slice(out, func(i, j int) bool { return len(out[i]) > len(out[j]) })
	return out
}

// OldKernel is a mountns.Remover that answers as a kernel without
// detach-on-rmdir: OldKernelRmdir and OldKernelRemoveAll.
type OldKernel struct{}

// Rmdir is OldKernelRmdir.
func (OldKernel) Rmdir(dir string) error { return OldKernelRmdir(dir) }

// RemoveAll is OldKernelRemoveAll.
func (OldKernel) RemoveAll(dir string) error { return OldKernelRemoveAll(dir) }

// OldKernelRmdir is rmdir as a kernel without detach-on-rmdir (mainline
// before 3.18, RHEL 7 with fs.may_detach_mounts=0) answers it: EBUSY while
// dir is a mount point in any mount namespace. This kernel detaches such
// mounts on rmdir instead, so tests of the EBUSY paths give it to the code
// under test (mountns.WithRemover, OldKernel; integration/oldkernel does the
// same for a whole process, with seccomp).
func OldKernelRmdir(dir string) error {
	for _, mp := range MountpointsAnywhere(dir) {
		if mp == dir {
			return unix.EBUSY
		}
	}
	return unix.Rmdir(dir)
}

// OldKernelRemoveAll is os.RemoveAll as such a kernel answers it: the
// *os.PathError (unlinkat, EBUSY) of the deepest mount point at or below
// dir in any namespace, or os.RemoveAll's own result when there is none.
func OldKernelRemoveAll(dir string) error {
	for _, mp := range MountpointsAnywhere(dir) {
		if _, err := os.Lstat(mp); err == nil {
			return &os.PathError{Op: "unlinkat", Path: mp, Err: unix.EBUSY}
		}
	}
	return os.RemoveAll(dir)
}

// unescape undoes mountinfo's octal escapes (space, tab, newline, backslash).
func unescape(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b []byte
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b = append(b, byte(n))
				i += 3
				continue
			}
		}
		b = append(b, s[i])
	}
	return string(b)
}
