#!/usr/bin/env bash
# test-surface-310.sh — the tests of every package a patched dockerd or the CLI runs, once more on
# Linux 3.10's system-call surface (RHEL 7's kernel): under `bin/oldkernel -surface-3.10`, every
# system call 3.10 lacks (statx, openat2, listmount, statmount, execveat, pidfd_open, ...) fails
# with ENOSYS and the newer nsfs ioctls with ENOTTY, so each package runs the fallbacks it has for
# old kernels. rmdir keeps this kernel's answer (-rmdir-detaches): the EBUSY half of old kernels has
# tests of its own. Each test binary runs in its own pid namespace with its own /proc: without the
# namespace walk a process whose namespace cannot be read (pid 1 of some container hosts) fails a
# scan, as it must; in a pid namespace of its own every process is the tests' own.
#
# usage: scripts/test-surface-310.sh   (root; `make test-surface-310` builds bin/oldkernel first)
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" != 0 ]; then
	echo "test-surface-310: needs root (namespaces, mounts, seccomp)" >&2
	exit 2
fi
[ -x bin/oldkernel ] || { echo "test-surface-310: bin/oldkernel is missing: run make oldkernel" >&2; exit 2; }
emulator=$PWD/bin/oldkernel
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# module directory and package, as the Makefile's modules build them (each on its own go.mod)
packages=(". mountns" ". overlay2" ". daemon" ". layer" ". snapshotter" "cmd nsdetach")
failed=0
for entry in "${packages[@]}"; do
	read -r module pkg <<<"$entry"
	bin="$tmp/$(echo "$module/$pkg" | tr './' '__').test"
	(cd "$module" && GOWORK=off go test -c -o "$bin" "./$pkg")
	echo "== $module/$pkg on Linux 3.10's system calls"
	if ! (cd "$module/$pkg" && "$emulator" -surface-3.10 -rmdir-detaches -- \
		unshare --pid --fork --mount-proc "$bin" -test.timeout 10m); then
		failed=$((failed + 1))
	fi
done
if ((failed)); then
	echo "test-surface-310: $failed package(s) failed on Linux 3.10's system calls" >&2
	exit 1
fi
echo "test-surface-310: every package passed on Linux 3.10's system calls"
