// Package paths answers the one question about clean absolute paths that
// mountns, layer and the CLI each ask: is this path a directory or below it.
// It compares strings: it touches no file and resolves no symlink, so it is
// for paths already made clean and absolute (a mount table's, or one the
// caller resolved).
//
// It is for code of this repository only; when not to use it: for a path
// that may hold "..", symlinks or a relative part, resolve it first (for
// example with mountns.ResolveUnderRoot) or use filepath.Rel.
package paths
