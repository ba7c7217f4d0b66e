#!/bin/bash
# /usr/sbin/dockerd in the vm-e2e guest: the engine (/usr/local/lib/nsdetach-vm/dockerd) under the
# old-kernel emulator, as integration/e2e/run.sh starts it (`oldkernel -- ... dockerd`). The
# emulator forwards SIGTERM and outlives dockerd for as long as the shims it started run, so that
# rmdir keeps failing with EBUSY for them too.
#
# The emulator takes fd 3 for its own socket; socket activation's fds (-H fd://) move to fd 10 and
# up here and back in dockerd-child.
set -eu
if [ -n "${LISTEN_FDS:-}" ]; then
	i=0
	while [ "$i" -lt "$LISTEN_FDS" ]; do
		eval "exec $((10 + i))<&$((3 + i)) $((3 + i))<&-"
		i=$((i + 1))
	done
fi
exec /usr/local/bin/oldkernel -- /usr/local/lib/nsdetach-vm/dockerd-child "$@"
