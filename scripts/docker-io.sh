#!/usr/bin/env bash
# docker-io.sh [DIR] — Debian's own docker.io package (an engine that no one here built) unpacked
# under DIR (default REPO/.build/docker.io), never installed: installing it would put dockerd and
# docker-proxy on PATH for everything else the machine runs. Prints the unpacked root, whose
# usr/sbin/dockerd and usr/bin/docker the e2e harness runs. Its managed containerd, shims and runc
# are Debian's containerd and runc packages (installed when missing, as run.sh does).
set -euo pipefail

die() {
	printf 'docker-io: %s\n' "$*" >&2
	exit 1
}

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
dir=${1:-$repo/.build/docker.io}
{ command -v apt-get && command -v dpkg-deb; } >/dev/null || die "needs a Debian machine (apt-get, dpkg-deb)"

if [[ ! -x $dir/usr/sbin/dockerd || ! -x $dir/usr/bin/docker ]]; then
	work=$(mktemp -d "${TMPDIR:-/tmp}/docker-io.XXXXXX")
	trap 'rm -rf "$work"' EXIT
	chmod 755 "$work" # apt's download user must be able to write there
	# apt-get download needs the package lists; refresh them once when they do not know docker.io.
	apt-cache show docker.io >/dev/null 2>&1 || apt-get update -qq >&2 || die "apt-get update failed"
	(cd "$work" && apt-get download -q docker.io >&2) || die "apt-get download docker.io failed"
	deb=("$work"/docker.io_*.deb)
	[[ -f ${deb[0]} ]] || die "apt-get download left no docker.io_*.deb in $work"
	rm -rf "$dir"
	mkdir -p "$dir"
	dpkg-deb -x "${deb[0]}" "$dir" || die "dpkg-deb -x ${deb[0]} failed"
	dpkg-deb -f "${deb[0]}" Version >"$dir/VERSION"
	# The shared libraries its dockerd links (libdevmapper, libsystemd, ...): the package's lib*
	# dependencies, installed when missing; the engine itself stays unpacked only.
	mapfile -t libs < <(dpkg-deb -f "${deb[0]}" Depends | tr ',|' '\n' | sed -n 's/^ *\(lib[^ ]*\).*/\1/p' | sort -u)
	need=()
	for l in "${libs[@]}"; do
		dpkg-query -W -f='${Status}' "$l" 2>/dev/null | grep -q 'install ok installed' || need+=("$l")
	done
	if ((${#need[@]})); then
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >&2 || die "apt-get install ${need[*]} failed"
	fi
	echo "docker-io: unpacked docker.io $(<"$dir/VERSION") into $dir" >&2
fi
[[ -x $dir/usr/sbin/dockerd ]] || die "$dir/usr/sbin/dockerd is missing: not the docker.io package layout expected"
echo "$dir"
