// Package procfs reads the few /proc facts this module needs about a
// process: its mount namespace, its command name, and the list of processes;
// and how /proc/PID/mountinfo writes a path (EscapeMountinfo).
// Each is read the cheapest way (one readlink, one raw read, one directory
// listing), because a scan asks thousands of processes. Errors keep the
// kernel's errno (*os.PathError), so callers can tell a process that exited
// (ENOENT, ESRCH) from one they may not inspect (EACCES).
//
// When not to use it: for any other /proc fact. It is for code of this
// repository only and not a general /proc library (github.com/prometheus/procfs
// is one); a mount table is read with github.com/moby/sys/mountinfo, as
// mountns does.
package procfs
