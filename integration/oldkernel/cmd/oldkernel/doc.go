// Command oldkernel runs a command under the pre-3.18 rmdir semantics
// emulated by package oldkernel: removing a directory that is a mount point
// in another mount namespace fails with EBUSY, for the command and every
// process it starts.
//
//	oldkernel [-abandon] [-debug] -- CMD [ARGS...]
//
// It exits with CMD's exit status (128+N if signal N killed it), forwards
// SIGTERM and SIGINT to CMD, and by default keeps answering for CMD's
// descendants until the last of them exits. Exit status 125 means oldkernel
// itself failed; 127, that CMD was not found; 126, that it is not
// executable.
//
// When not to use it: on a production node, or around anything whose data
// matters. It is test tooling: every rmdir of every process it starts pays
// a scan of all mount namespaces, and a failed check lets the call through
// to the kernel (docs/oldkernel.md has its limits).
package main
