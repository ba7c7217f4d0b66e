// Package nstest builds real mount-namespace fixtures for root-only tests:
// it isolates a test binary in a private mount namespace of its own, starts
// holder processes (plain, pivot_rooted, chrooted, user-namespaced) that keep
// copies of mounts alive after the test's namespace drops them, mounts
// overlays and tmpfs, and checks that nothing is left behind.
package nstest
