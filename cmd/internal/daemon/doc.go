// Package daemon is the CLI's view of a running dockerd, for operators and
// monitoring: what `nsdetach doctor`, `scan`, `detach --root`, `serve` and
// `rejoin` need. It lives with the CLI, not in the module a moby fork
// vendors, since the engine's own removal path needs none of it.
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
// When not to use it: none of this is needed on the removal path; the engine
// calls the library's daemon.EnsureRemoveAll, overlay2 and layer packages.
package daemon
