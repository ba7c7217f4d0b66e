package oldkernel

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

// rmdirSyscall and unlinkSyscall make the old single-path system calls, not
// the unlinkat(2) that Go's wrappers use.
func rmdirSyscall(path string) error {
	p, err := unix.BytePtrFromString(path)
	if err != nil {
		return err
	}
	if _, _, errno := unix.Syscall(unix.SYS_RMDIR, uintptr(unsafe.Pointer(p)), 0, 0); errno != 0 {
		return errno
	}
	return nil
}

func unlinkSyscall(path string) error {
	p, err := unix.BytePtrFromString(path)
	if err != nil {
		return err
	}
	if _, _, errno := unix.Syscall(unix.SYS_UNLINK, uintptr(unsafe.Pointer(p)), 0, 0); errno != 0 {
		return errno
	}
	return nil
}
