// Command nsdetach finds mounts under a container engine's data root that
// leaked into other mount namespaces, and detaches them there.
//
//	nsdetach holders PATH                     who holds PATH, in which namespaces
//	nsdetach scan --root DIR [--all]          every leak under DIR: stale or pinned
//	nsdetach detach --root DIR [--stale-only] clean a node in one pass
//	nsdetach detach PATH --root DIR           free one mount point
//	nsdetach doctor                           what is wrong with this dockerd, and the fix
//	nsdetach serve --listen ADDR              Prometheus exporter (the DaemonSet)
//	nsdetach rejoin -- DOCKERD [ARGS...]      systemd ExecStart= launcher
//
// Every command but serve takes --json (rejoin with --dry-run only), and
// detach and rejoin take --dry-run. Exit status 0 means nothing found or
// everything done, 1 something found or left, 2 bad input (nothing
// touched). `nsdetach COMMAND --help`
// is each command's manual; README.md and docs/operating.md say which to
// run when.
//
// When not to use it: it is for operators and monitoring, not for the
// engine's removal path (a dockerd fork calls the library, see
// docs/architecture.md). It needs root, and it never detaches anything
// outside the --root it is given, in a running container's own namespace,
// or in its own namespace.
package main
