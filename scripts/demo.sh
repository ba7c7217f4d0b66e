#!/usr/bin/env bash
# The incident in throwaway namespaces: an "old daemon" mounts an overlay layer
# in its own mount namespace, a shim-like process pins that namespace, and a
# "restarted daemon" in a new namespace cannot unmount it. nsdetach names the
# holder and detaches the mount there. Then the incident is replayed on an
# emulated old kernel (integration/replay): moby's overlay2 Put logs EINVAL
# and Remove fails with EBUSY; nsdetach's paths remove the layer. Everything
# runs inside a private mount namespace of its own and is removed at the end.
set -euo pipefail

if [ "$(id -u)" != 0 ]; then
	echo "demo: needs root (it makes mount namespaces and overlay mounts); run: sudo make demo" >&2
	exit 2
fi
NSDETACH=${NSDETACH:-$(cd "$(dirname "$0")/.." && pwd)/bin/nsdetach}
[ -x "$NSDETACH" ] || { echo "demo: $NSDETACH missing; run: make build" >&2; exit 2; }
REPLAY=${REPLAY:-$(cd "$(dirname "$0")/.." && pwd)/bin/replay}
[ -x "$REPLAY" ] || { echo "demo: $REPLAY missing; run: make demo" >&2; exit 2; }

if [ "${NSDETACH_DEMO_INNER:-}" != 1 ]; then
	# Re-run inside a private mount namespace: nothing can reach the host's.
	NSDETACH_DEMO_INNER=1 exec unshare -m --propagation private "$0" "$@"
fi

work=$(mktemp -d /tmp/nsdetach-demo.XXXXXX)
shim=
cleanup() {
	if [ -n "$shim" ]; then kill "$shim" 2>/dev/null; wait "$shim" 2>/dev/null || true; fi
	umount -l "$work/docker/overlay2/l1/merged" 2>/dev/null || true
	rm -rf "$work"
}
trap cleanup EXIT

step() { printf '\n== %s\n' "$*"; }
show() { printf '$ %s\n' "$*"; "$@"; }

root=$work/docker
layer=$root/overlay2/l1
mkdir -p "$layer"/{lower,diff,work,merged}
echo hello >"$layer/lower/file"

step "1. The old daemon (mount namespace A) mounts the layer; a shim keeps A alive"
ready=$work/ready
# $1 and $2 are the inner shell's arguments, expanded there.
# shellcheck disable=SC2016
unshare -m --propagation private sh -c '
	mount -t overlay overlay -o "lowerdir=$1/lower,upperdir=$1/diff,workdir=$1/work" "$1/merged" &&
	touch "$2" && exec sleep 100000' demo-shim "$layer" "$ready" &
shim=$!
while [ ! -e "$ready" ]; do
	kill -0 "$shim" 2>/dev/null || { echo "demo: the shim failed to mount the overlay" >&2; exit 1; }
	sleep 0.05
done
echo "shim pid $shim, namespace $(readlink /proc/$shim/ns/mnt); this shell: $(readlink /proc/self/ns/mnt)"
grep -F " $layer/merged " /proc/$shim/mountinfo | cut -d' ' -f1-5,9-10

step "2. dockerd restarts into a new namespace (A'): its unmount fails, the mount is not there"
set +e
show unshare -m --propagation private umount "$layer/merged"
echo "umount2 exit status $? (EINVAL: not a mount point in this namespace)"
set -e

step "3. nsdetach names the namespace that still holds it"
set +e
show "$NSDETACH" holders "$layer/merged"
echo "exit status $? (1 = held)"
set -e

set +e
show "$NSDETACH" scan --root "$root"
echo "exit status $? (1 = leaks found; stale: no live container uses the layer)"
set -e

step "4. nsdetach detaches the stale leaks inside that namespace (the shim keeps running)"
show "$NSDETACH" detach --root "$root" --stale-only

step "5. Nothing holds it any more; the layer can be removed on any kernel"
show "$NSDETACH" holders "$layer/merged"
show rmdir "$layer/merged"
kill -0 "$shim" && echo "shim $shim still running"

step "6. The same incident on an emulated pre-3.18 kernel, against moby v28.5.2's own overlay2 code and nsdetach's"
show "$REPLAY"
echo
echo "demo: done; cleaning up"
