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
// When not to use it: neither is needed on the removal path. A removal that
// succeeds, or an unmount that succeeds, needs no scan; the namespace-aware
// fallbacks in package mountns run only when the kernel says "not mounted
// here" or "busy". Doctor and FindLeaks are for operators and monitoring.
//
// This package must not import github.com/docker/docker: it is vendored into
// moby by the patch series, and an import back would be a cycle.
package daemon
