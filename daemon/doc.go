// Package daemon is what moby's daemon package calls when a container's
// directory cannot be removed because a mount below it leaked into another
// mount namespace.
//
// EnsureRemoveAll is containerfs.EnsureRemoveAll for cleanupContainer: on
// EBUSY it unmounts the path here, or detaches its foreign copies when the
// kernel says it is not mounted here, and retries at once (no sleeping retry
// loop); the final error names the path and its holders.
//
// When not to use it: a removal that succeeds needs no scan; the
// namespace-aware fallback (package mountns) runs only when the kernel says
// "busy". The operator's side (the doctor, the leak scan, rejoin) lives with
// the nsdetach CLI, not here, so that a fork vendors only what it calls.
//
// This package must not import github.com/docker/docker: it is vendored into
// moby by the patch series, and an import back would be a cycle.
package daemon
