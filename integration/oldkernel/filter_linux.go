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
//
// With surface310 the filter also answers ENOSYS for every system call that
// Linux 3.10 lacks (and ENOTTY for the nsfs ioctls it lacks), as that kernel
// would: see since310.
func loadFilter(s syscalls, surface310 bool) (int, error) {
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
	if surface310 {
		if err := addSurface310(filter, s.arch); err != nil {
			return -1, err
		}
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

// since310 names the system calls added after Linux 3.10 (RHEL 7's kernel)
// that libseccomp 2.5 knows by name, oldest first: sched_setattr (3.14) to
// io_pgetevents (4.18). rseq (4.18) is left to the kernel: glibc registers
// every new thread with it and aborts the process ("Fatal glibc error: rseq
// registration failed") when a thread cannot be registered after the first
// one was, which a filter installed mid-life produces; nsdetach never calls
// it. Every call from pidfd_send_signal (4.19+, number 424) on has
// the same number on every architecture but alpha, so firstUnified..
// lastUnified covers those (statx's successors openat2, listmount,
// statmount, ...) by number, including ones this libseccomp has no name for.
var since310 = []string{
	"sched_setattr", "sched_getattr", "renameat2", "seccomp", "getrandom",
	"memfd_create", "kexec_file_load", "bpf", "execveat", "userfaultfd",
	"membarrier", "mlock2", "copy_file_range", "preadv2", "pwritev2",
	"pkey_mprotect", "pkey_alloc", "pkey_free", "statx", "io_pgetevents",
}

const (
	firstUnified = 424 // pidfd_send_signal
	lastUnified  = 511 // beyond every call Linux has today
)

// nsfsIoctls310 are the nsfs ioctl requests of linux/nsfs.h that the
// library uses and Linux 3.10 lacks: NS_GET_MNTNS_ID, NS_MNT_GET_NEXT,
// NS_MNT_GET_PREV (6.12). 3.10 has no nsfs ioctls at all: ENOTTY.
var nsfsIoctls310 = []uint64{0x8008b705, 0x8010b70b, 0x8010b70c}

// addSurface310 adds the rules that make the kernel look like 3.10 to the
// filtered command.
func addSurface310(filter *seccomp.ScmpFilter, arch seccomp.ScmpArch) error {
	nosys := seccomp.ActErrno.SetReturnCode(int16(unix.ENOSYS))
	for _, name := range since310 {
		sc, err := seccomp.GetSyscallFromNameByArch(name, arch)
		if err != nil || sc < 0 {
			continue // not a call of this architecture
		}
		if err := filter.AddRuleExact(sc, nosys); err != nil {
			return fmt.Errorf("oldkernel: ENOSYS rule for %s: %w", name, err)
		}
	}
	for nr := firstUnified; nr <= lastUnified; nr++ {
		if err := filter.AddRuleExact(seccomp.ScmpSyscall(nr), nosys); err != nil {
			return fmt.Errorf("oldkernel: ENOSYS rule for system call %d: %w", nr, err)
		}
	}
	ioctl, err := seccomp.GetSyscallFromNameByArch("ioctl", arch)
	if err != nil {
		return fmt.Errorf("oldkernel: ioctl: %w", err)
	}
	notty := seccomp.ActErrno.SetReturnCode(int16(unix.ENOTTY))
	for _, req := range nsfsIoctls310 {
		cond, err := seccomp.MakeCondition(1, seccomp.CompareMaskedEqual, 0xffffffff, req)
		if err != nil {
			return fmt.Errorf("oldkernel: ioctl %#x condition: %w", req, err)
		}
		if err := filter.AddRuleConditionalExact(ioctl, notty, []seccomp.ScmpCondition{cond}); err != nil {
			return fmt.Errorf("oldkernel: ENOTTY rule for ioctl %#x: %w", req, err)
		}
	}
	return nil
}
