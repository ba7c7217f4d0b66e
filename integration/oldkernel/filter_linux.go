package oldkernel

import (
	"fmt"

	seccomp "github.com/seccomp/libseccomp-golang"
	"golang.org/x/sys/unix"
)

// syscalls holds the native numbers of the calls the filter notifies on.
// rmdir is -1 on architectures that only have unlinkat (arm64).
type syscalls struct {
	arch     seccomp.ScmpArch
	rmdir    seccomp.ScmpSyscall
	unlinkat seccomp.ScmpSyscall
}

func nativeSyscalls() (syscalls, error) {
	arch, err := seccomp.GetNativeArch()
	if err != nil {
		return syscalls{}, fmt.Errorf("oldkernel: native arch: %w", err)
	}
	s := syscalls{arch: arch, rmdir: -1}
	unlinkat, err := seccomp.GetSyscallFromNameByArch("unlinkat", arch)
	if err != nil {
		return syscalls{}, fmt.Errorf("oldkernel: unlinkat: %w", err)
	}
	s.unlinkat = unlinkat
	// A negative number is one of libseccomp's pseudo-syscalls: the
	// architecture has no rmdir of its own.
	if rmdir, err := seccomp.GetSyscallFromNameByArch("rmdir", arch); err == nil && rmdir >= 0 {
		s.rmdir = rmdir
	}
	return s, nil
}

// loadFilter installs the notification filter on the calling OS thread and
// returns the listener fd. The caller must have locked its OS thread and
// must never unlock it: the thread stays filtered for life.
//
// Filters outlive execve and are inherited across fork and clone; that is
// how the command's descendants get it.
func loadFilter(s syscalls) (int, error) {
	filter, err := seccomp.NewFilter(seccomp.ActAllow)
	if err != nil {
		return -1, fmt.Errorf("oldkernel: new filter: %w", err)
	}
	defer filter.Release()

	// Calls made through another ABI (int 0x80, x32) are not emulated but must
	// not be killed either: the default bad-arch action is to kill.
	if err := filter.SetBadArchAction(seccomp.ActAllow); err != nil {
		return -1, fmt.Errorf("oldkernel: bad-arch action: %w", err)
	}
	// no_new_privs would be inherited by every descendant and break setuid
	// binaries and container runtimes; with CAP_SYS_ADMIN it is not needed.
	if err := filter.SetNoNewPrivsBit(!hasSysAdmin()); err != nil {
		return -1, fmt.Errorf("oldkernel: no_new_privs attribute: %w", err)
	}
	if s.rmdir >= 0 {
		if err := filter.AddRuleExact(s.rmdir, seccomp.ActNotify); err != nil {
			return -1, fmt.Errorf("oldkernel: rule for rmdir: %w", err)
		}
	}
	removeDir, err := seccomp.MakeCondition(2, seccomp.CompareMaskedEqual, unix.AT_REMOVEDIR, unix.AT_REMOVEDIR)
	if err != nil {
		return -1, fmt.Errorf("oldkernel: AT_REMOVEDIR condition: %w", err)
	}
	if err := filter.AddRuleConditionalExact(s.unlinkat, seccomp.ActNotify, []seccomp.ScmpCondition{removeDir}); err != nil {
		return -1, fmt.Errorf("oldkernel: rule for unlinkat: %w", err)
	}
	if err := filter.Load(); err != nil {
		return -1, fmt.Errorf("oldkernel: load filter: %w", err)
	}
	fd, err := filter.GetNotifFd()
	if err != nil {
		return -1, fmt.Errorf("oldkernel: listener fd: %w", err)
	}
	return int(fd), nil
}

// hasSysAdmin reports whether CAP_SYS_ADMIN is in the effective set, which
// lets seccomp(2) install a filter without no_new_privs.
func hasSysAdmin() bool {
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		return false
	}
	return data[unix.CAP_SYS_ADMIN/32].Effective&(1<<(unix.CAP_SYS_ADMIN%32)) != 0
}
