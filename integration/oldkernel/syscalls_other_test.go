//go:build linux && !amd64

package oldkernel

import "golang.org/x/sys/unix"

// Architectures without rmdir(2) and unlink(2) (arm64) only have unlinkat.
func rmdirSyscall(path string) error {
	return unix.Unlinkat(unix.AT_FDCWD, path, unix.AT_REMOVEDIR)
}

func unlinkSyscall(path string) error {
	return unix.Unlinkat(unix.AT_FDCWD, path, 0)
}
