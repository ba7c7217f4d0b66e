#!/usr/bin/env bash
# build-runc.sh VERSION — build runc from the module on the Go module proxy, cached under .build.
#
# Docker Engine 29 writes OCI specs with a time namespace, which Debian's runc 1.1.5 refuses
# ("namespace {"time" ""} does not exist"); the e2e runs of Engine 29 use this runc instead. It is
# built the way runc's own Makefile builds it (cgo, -tags seccomp, libseccomp from Debian) in a
# copy of the module, and installed as BUILD_DIR/runc-VERSION/bin/runc, a directory with nothing
# else in it, for the harness to put first in dockerd's PATH. The last line on stdout is that path.
#
# Environment: BUILD_DIR (default REPO/.build).
set -euo pipefail

die() {
	printf 'build-runc: %s\n' "$*" >&2
	exit 1
}

[[ $# -eq 1 ]] || die "usage: $0 VERSION (for example 1.5.3)"
version=${1#v}
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build_dir=${BUILD_DIR:-$repo/.build}
out=$build_dir/runc-$version/bin/runc

if [[ -x $out ]] && "$out" --version 2>/dev/null | grep -q "^runc version $version\$"; then
	echo "$out"
	exit 0
fi

need_pkgs=()
command -v go >/dev/null || die "go not found in PATH"
command -v gcc >/dev/null || need_pkgs+=(gcc libc6-dev)
command -v pkg-config >/dev/null || need_pkgs+=(pkg-config)
[[ -f /usr/include/seccomp.h ]] || need_pkgs+=(libseccomp-dev)
if ((${#need_pkgs[@]})); then
	[[ $(id -u) -eq 0 ]] || die "missing ${need_pkgs[*]}; run as root to apt-get install them, or install them yourself"
	DEBIAN_FRONTEND=noninteractive apt-get install -y "${need_pkgs[@]}" >&2 || die "apt-get install ${need_pkgs[*]} failed"
fi

# The copy lives below this repository's go.work, which must not apply to it.
export GOTOOLCHAIN=local GO111MODULE=on GOFLAGS=-mod=readonly GOWORK=off
info=$(cd / && go mod download -json "github.com/opencontainers/runc@v$version" 2>&1) ||
	die "cannot download github.com/opencontainers/runc@v$version through the Go module proxy (GOPROXY=$(go env GOPROXY)):
$info"
src=$(sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p' <<<"$info")
[[ -d $src ]] || die "go mod download gave no module directory:
$info"

work=$build_dir/runc-$version/src
rm -rf "$work"
mkdir -p "$work" "$(dirname "$out")"
cp -r "$src"/. "$work"
chmod -R u+w "$work"
(
	cd "$work"
	# runc's vendor/ is not in the module zip: build in module mode against its go.sum.
	CGO_ENABLED=1 go build -trimpath -tags seccomp \
		-ldflags "-X main.version=$version -X main.gitCommit=module-proxy" -o "$out" .
) >&2 || die "go build of runc v$version failed (above)"
"$out" --version | grep -q "^runc version $version\$" || die "$out does not report version $version: $("$out" --version 2>&1)"
echo "build-runc: built $out" >&2
echo "$out"
