#!/bin/bash
# Run by the emulator (dockerd-wrapper.sh): puts socket activation's fds back at 3 and up for this
# pid, makes this pid docker.service's main pid (the unit has NotifyAccess=all), so that
# `systemctl stop` signals dockerd itself and leaves the emulator running for the shims, as
# KillMode=process leaves the shims; then becomes dockerd.
set -eu
if [ -n "${LISTEN_FDS:-}" ]; then
	i=0
	while [ "$i" -lt "$LISTEN_FDS" ]; do
		eval "exec $((3 + i))<&$((10 + i)) $((10 + i))<&-"
		i=$((i + 1))
	done
	LISTEN_PID=$$
	export LISTEN_PID
fi
systemd-notify --pid=$$
# argv[0] is the unit's /usr/sbin/dockerd, as without the emulator: nsdetach doctor builds its
# rejoin drop-in from dockerd's command line.
exec -a /usr/sbin/dockerd /usr/local/lib/nsdetach-vm/dockerd "$@"
