// Package nstest builds real mount-namespace fixtures for root-only tests:
// it isolates a test binary in a private mount namespace of its own (Main),
// starts holder processes (plain, pivot_rooted, chrooted, user-namespaced)
// that keep copies of mounts alive after the test's namespace drops them,
// mounts overlays and tmpfs under per-test directories that clean
// themselves up, answers rmdir as an old kernel would (OldKernelRmdir), and
// checks that nothing is left behind.
//
// When not to use it: outside tests. Its fixtures need root, mount real
// filesystems and start processes; a package that uses it must call Main
// from its TestMain, so that a forgotten mount dies with the test binary's
// private namespace instead of reaching the host's. For a whole process
// under old-kernel rmdir semantics (a dockerd, moby's own code), use
// integration/oldkernel instead.
package nstest
