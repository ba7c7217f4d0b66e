// Command replay plays the incident (docs/incident.md) on an emulated old
// kernel (rmdir of a directory that any mount namespace has as a mount
// point fails with EBUSY), first with moby v28.5.2's stock overlay2 code,
// then with nsdetach's, and prints each step with what the kernel said and
// a side-by-side summary. make demo runs it.
//
//	replay
//
// It needs root (mount namespaces, overlay mounts, seccomp), works in a
// temporary directory that it removes, and exits 0 when the replay showed
// what it should (stock fails as in the incident, nsdetach's paths remove
// cleanly), 1 when it did not, 2 when it could not run.
//
// When not to use it: as a test. go test ./integration/replay holds the same
// replays to assertions; this command is for a person watching make demo.
package main
