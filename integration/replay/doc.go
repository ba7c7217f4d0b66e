// Package replay plays the incident (docs/incident.md) against moby's own code
// and against nsdetach's, under the old-kernel emulator (package
// integration/oldkernel), with real mount namespaces and real overlay
// mounts.
//
// One [Play] is one node of the incident, in a child process under the
// emulator:
//
//  1. "daemon A" starts in a mount namespace of its own (systemd's
//     MountFlags=slave), lets moby v28.5.2's overlay2 driver create a
//     container layer and mount it (Driver.Get), and, for [ForceRemove], mounts
//     the container's shm under its root directory, as dockerd does;
//  2. daemon A starts a shim-like process (named containerd-shim) in its
//     namespace and exits without unmounting anything: a daemon restart with
//     live-restore, the shim keeping namespace A and its mounts alive;
//  3. "daemon A'" starts in a new namespace over the same data root and runs
//     the removal path under test ([Path]): the layer's Put then Remove
//     ([Incident]), or a model of cleanupContainer's force removal
//     ([ForceRemove]) with the 1.13.1 or 18.06 policy ([Policy]);
//  4. the node records what remains (directories, and mounts in any
//     namespace), stops the shim and reports an [Outcome].
//
// Package replay's tests hold the stock path to the incident's errors
// (Put logs EINVAL, Remove fails with EBUSY on .../merged) and nsdetach's
// paths to a clean removal; cmd/replay prints the same replay for a person
// (make demo).
//
// A binary that calls Play must call oldkernel.Init and then [Init] first
// thing in main (or TestMain): the node, the daemons and the shim are that
// binary, re-executed.
//
// When not to use it: it is a test and demonstration fixture. It mounts
// overlays and tmpfs, needs root, and scans every mount namespace of the
// machine on each rmdir (the emulator's price).
package replay
