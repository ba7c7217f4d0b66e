package oldkernel

import (
	"strings"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"
)

// surfaceProbe makes one call that Linux 3.10 lacks, with arguments that a
// kernel which has it answers without ENOSYS or ENOTTY.
func surfaceProbe(name string) error {
	switch name {
	case "statx":
		var stx unix.Statx_t
		return unix.Statx(unix.AT_FDCWD, "/", 0, unix.STATX_MNT_ID, &stx)
	case "openat2":
		fd, err := unix.Openat2(unix.AT_FDCWD, "/", &unix.OpenHow{Flags: unix.O_PATH | unix.O_CLOEXEC})
		if err == nil {
			unix.Close(fd)
		}
		return err
	case "listmount":
		// No request: a kernel with listmount says EFAULT.
		_, _, errno := unix.Syscall6(458, 0, 0, 0, 0, 0, 0)
		return errnoOrNil(errno)
	case "ns-get-mntns-id":
		fd, err := unix.Open("/proc/self/ns/mnt", unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		var id uint64
		_, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), 0x8008b705, uintptr(unsafe.Pointer(&id)))
		return errnoOrNil(errno)
	case "getpid":
		unix.Getpid()
		return nil
	}
	return unix.EINVAL
}

func errnoOrNil(errno unix.Errno) error {
	if errno == 0 {
		return nil
	}
	return errno
}

// TestSurface310 checks that Surface310 answers as Linux 3.10 would for the
// calls the library has fallbacks for, and only with it.
func TestSurface310(t *testing.T) {
	requireRoot(t)
	calls := []string{"statx", "openat2", "listmount", "ns-get-mntns-id", "getpid"}
	ops := make([]string, len(calls))
	for i, c := range calls {
		ops[i] = "syscall:" + c
	}
	under, _ := runUnder(t, Config{Surface310: true}, ops...)
	plain, _ := runUnder(t, Config{}, ops...)
	if len(under) != len(calls) || len(plain) != len(calls) {
		t.Fatalf("helper answered %q under the surface and %q without it, want %d lines each", under, plain, len(calls))
	}
	tests := []struct {
		call string
		want string // under Surface310
	}{
		{"statx", "ENOSYS"},
		{"openat2", "ENOSYS"},
		{"listmount", "ENOSYS"},
		{"ns-get-mntns-id", "ENOTTY"},
		{"getpid", "ok"},
	}
	for i, tc := range tests {
		if under[i] != tc.want {
			t.Errorf("%s with Surface310: %s, want %s", tc.call, under[i], tc.want)
		}
		if tc.want != "ok" && plain[i] == tc.want {
			// Only a kernel that has the call can show the filter at work.
			t.Logf("%s: this kernel lacks it itself (%s without Surface310)", tc.call, plain[i])
		}
	}
	if plain[0] != "ok" {
		t.Errorf("statx without Surface310: %s, want ok (this kernel has had it since 4.11)", plain[0])
	}
	t.Logf("without Surface310: %s", strings.Join(plain, " "))
}
