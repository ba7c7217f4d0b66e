// Package daemon is the engine side of nsdetach: what dockerd's own clean-up
// paths and start-up checks need when mounts leak into other mount
// namespaces.
//
// Doctor answers, for one running dockerd, the questions an on-call engineer
// asks when containers hang in "Removal In Progress": is the daemon in a mount
// namespace of its own (systemd's MountFlags=slave), is live-restore on (which
// keeps the old namespace alive through its containerd shims), does the kernel
// detach foreign mounts on rmdir (3.18 and later, or fs.may_detach_mounts=1 on
// RHEL 7), and which mounts under the data root leaked into other namespaces,
// held by which processes. Each finding comes with why it matters and the
// exact fix. FindLeaks is the scan behind the last question; it sorts every
// leaked mount into stale (no live container uses it: safe to detach) and
// pinned (a live container still runs on it).
//
// DecideRejoin and ExecRejoin treat the cause rather than the symptom: a
// dockerd about to start (nsdetach rejoin, in systemd's ExecStart=) finds the
// one mount namespace that the previous daemon's containerd shims keep alive
// with its mounts, and is exec'd inside it, so a restart under
// MountFlags=slave leaks nothing.
//
// EnsureRemoveAll is containerfs.EnsureRemoveAll for cleanupContainer: on
// EBUSY it unmounts the path here, or detaches its foreign copies when the
// kernel says it is not mounted here, and retries at once (no sleeping retry
// loop); the final error names the path and its holders.
//
// When not to use it: Doctor and FindLeaks are not needed on the removal path. A removal that
// succeeds, or an unmount that succeeds, needs no scan; the namespace-aware
// fallbacks (EnsureRemoveAll, package mountns) run only when the kernel says
// "not mounted here" or "busy". Doctor and FindLeaks are for operators and
// monitoring.
//
// This package must not import github.com/docker/docker: it is vendored into
// moby by the patch series, and an import back would be a cycle.
package daemon
