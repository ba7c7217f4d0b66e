#!/usr/bin/env bash
# Installs what building and testing need and the machine may lack: Debian
# packages (only when missing) and the Go modules of go.mod.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
have() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'; }
for pkg in "$@"; do
	have "$pkg" || need+=("$pkg")
done
if [ "${#need[@]}" -gt 0 ]; then
	if [ "$(id -u)" != 0 ]; then
		echo "deps: missing Debian packages ${need[*]}; install them as root: apt-get install -y ${need[*]}" >&2
		exit 2
	fi
	echo "deps: installing ${need[*]}"
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi
if ! go mod download; then
	echo "deps: cannot download Go modules: is the Go module proxy reachable (GOPROXY=$(go env GOPROXY))?" >&2
	exit 2
fi
