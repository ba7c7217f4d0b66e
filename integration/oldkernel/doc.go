// Package oldkernel emulates, for one command and everything it starts, the
// rmdir semantics of Linux kernels older than 3.18 (and of RHEL/CentOS 7 with
// fs.may_detach_mounts=0): removing a directory that is a mount point in any
// mount namespace fails with EBUSY.
//
// Newer kernels let such an rmdir succeed and lazily detach the foreign
// copies of the mount, so the failure behind the nsdetach incident (see
// docs/incident.md) does not happen by itself on a test machine. This package
// brings it back so that stock code paths can be shown to fail as in the
// incident and the fixed ones can be shown not to.
//
// # How
//
// [Run] re-executes the current binary as a short-lived child. The child, on
// a locked OS thread, installs a seccomp filter that returns
// SECCOMP_RET_USER_NOTIF for rmdir and for unlinkat with AT_REMOVEDIR set in
// its flags, and nothing else: unlink, unlinkat without AT_REMOVEDIR and every
// other system call pass the filter without a notification, so they cost a
// few BPF instructions and are otherwise untouched. The child sends the
// filter's listener fd to the parent over a unix socket (SCM_RIGHTS) and then
// execve's the command, which, with all its descendants, inherits the filter
// exactly as every process inherits the kernel.
//
// The parent is the [Supervisor]. For each notification it reads the path
// argument from the caller's memory (/proc/PID/mem), re-checks that the
// notification is still valid (SECCOMP_IOCTL_NOTIF_ID_VALID), resolves the
// path as the caller sees it (against /proc/PID/cwd, /proc/PID/fd/DIRFD and
// /proc/PID/root) and asks a [MountChecker] whether the directory is a mount
// point in a mount namespace other than the caller's. If it is, the call
// fails with EBUSY; otherwise the kernel runs it unchanged
// (SECCOMP_USER_NOTIF_FLAG_CONTINUE). A directory that is a mount point in
// the caller's own namespace needs no help: the kernel answers EBUSY itself.
//
// The binary that calls [Run] must call [Init] first thing in main (or in
// TestMain): that is where the re-executed child takes over.
//
// # Why libseccomp-golang
//
// The filter is built with github.com/seccomp/libseccomp-golang (v0.10.0,
// cgo over libseccomp ≥ 2.5, Debian package libseccomp-dev). It is what
// runc and containerd use, so the BPF it generates is the one those
// projects trust; it handles the architecture checks and the masked
// comparison on unlinkat's flags (arg 2 & AT_REMOVEDIR) that a hand-written
// BPF program would have to get right by itself; and it wraps the
// notification ioctls. Its response's Error field takes a positive errno.
// The cost is cgo and a C library at build time; the emulator is test
// tooling, not part of anything the patch series vendors.
//
// # When not to use it
//
// It is a test fixture. It changes the behaviour of every process it starts,
// adds a round trip to user space and a scan of every mount namespace to
// every directory removal (about 2 ms with 120 processes in a few
// namespaces on a 2-CPU test machine, growing with the number of
// namespaces; other system calls are not slowed measurably), and trusts the
// paths it reads (a caller that rewrites its own memory between the check and
// the call gets whatever the kernel does). Paths are resolved through procfs
// as root; a caller whose root is not reachable from the supervisor's is
// resolved on a best-effort basis.
package oldkernel
