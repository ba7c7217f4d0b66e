package daemon

import (
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// mayDetachMountsPath exists on RHEL/CentOS 7 kernels (3.10 with the
// detach-on-rmdir backport), whose default 0 keeps the old EBUSY behaviour.
const mayDetachMountsPath = "/proc/sys/fs/may_detach_mounts"

// KernelInfo says whether the kernel detaches foreign mounts when their
// mount point is removed (torvalds/linux@8ed936b5671b, 3.18).
type KernelInfo struct {
	// Release is uname -r.
	Release string `json:"release"`
	// MayDetachMounts is the value of fs.may_detach_mounts, "" where the
	// sysctl does not exist.
	MayDetachMounts string `json:"may_detach_mounts,omitempty"`
	// DetachesOnRmdir is true when rmdir of a directory that is a mount point
	// in another namespace succeeds and detaches those mounts, rather than
	// failing with EBUSY.
	DetachesOnRmdir bool `json:"detaches_on_rmdir"`
	// Why says how DetachesOnRmdir was decided.
	Why string `json:"why"`
}

func readKernel() KernelInfo {
	var u unix.Utsname
	release := "unknown"
	if unix.Uname(&u) == nil {
		release = unix.ByteSliceToString(u.Release[:])
	}
	sysctl, exists := "", false
	if b, err := os.ReadFile(mayDetachMountsPath); err == nil {
		sysctl, exists = strings.TrimSpace(string(b)), true
	}
	return kernelInfo(release, sysctl, exists)
}

// kernelInfo decides from the release and fs.may_detach_mounts. Mainline
// detaches unconditionally from 3.18; the sysctl is RHEL's switch for its
// backport into 3.10, so it decides only below 3.18.
func kernelInfo(release, sysctl string, sysctlExists bool) KernelInfo {
	k := KernelInfo{Release: release}
	if sysctlExists {
		k.MayDetachMounts = sysctl
	}
	major, minor, ok := kernelVersion(release)
	version := strconv.Itoa(major) + "." + strconv.Itoa(minor)
	switch {
	case ok && (major > 3 || (major == 3 && minor >= 18)):
		k.DetachesOnRmdir = true
		k.Why = "kernel " + version + " >= 3.18"
	case sysctlExists:
		k.DetachesOnRmdir = sysctl == "1"
		k.Why = "fs.may_detach_mounts = " + sysctl
	case !ok:
		k.Why = "cannot read the version from release " + strconv.Quote(release) + " and there is no fs.may_detach_mounts"
	default:
		k.Why = "kernel " + version + " < 3.18 and no fs.may_detach_mounts"
	}
	return k
}

// kernelVersion parses "5.10.0-21-amd64" or "3.10.0-1160.el7.x86_64".
func kernelVersion(release string) (major, minor int, ok bool) {
	parts := strings.SplitN(release, ".", 3)
	if len(parts) < 2 {
		return 0, 0, false
	}
	major, err1 := strconv.Atoi(parts[0])
	digits := parts[1]
	if i := strings.IndexFunc(digits, func(r rune) bool { return r < '0' || r > '9' }); i >= 0 {
		digits = digits[:i]
	}
	minor, err2 := strconv.Atoi(digits)
	return major, minor, err1 == nil && err2 == nil
}
