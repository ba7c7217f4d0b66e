#!/usr/bin/env bash
# build-dockerd.sh VERSION MODE — build dockerd from the moby module on the Go module proxy.
#
#   MODE stock    bin/dockerd-stock-VERSION, moby as released
#   MODE patched  bin/dockerd-VERSION, moby + patches/vVERSION/series + this module vendored in
#                 as a fork does (replace to this checkout, moby's go mod tidy and go mod vendor);
#                 fails if that moves any of moby's pins or its go line
#   MODE check    apply the series and compile the packages it touches, no binary (for CI)
#
# moby is not a Go module (vendor.mod, no go.mod), and its module zip carries no vendor tree, so
# the source is turned into one: vendor.mod/vendor.sum become go.mod/go.sum and the build runs
# in module mode. The tree is committed to a local git repository, tagged "pristine", so that
# the series applies with `git am` and a failing patch is named exactly.
#
# Environment: BUILD_DIR (default REPO/.build) holds the moby trees; BIN_DIR (default REPO/bin)
# receives the binaries.
set -euo pipefail

die() {
	printf 'build-dockerd: %s\n' "$*" >&2
	exit 1
}

[[ $# -eq 2 ]] || die "usage: $0 VERSION stock|patched|check"
version=$1
mode=$2
case $mode in stock | patched | check) ;; *) die "unknown MODE '$mode' (stock, patched or check)" ;; esac

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build_dir=${BUILD_DIR:-$repo/.build}
bin_dir=${BIN_DIR:-$repo/bin}
module=github.com/docker/docker
series_dir=$repo/patches/v$version
series=$series_dir/series
modversion=v$version+incompatible
modfile=vendor.mod
# Engine 29 and later: the daemon is the Go module github.com/moby/moby/v2 (go.mod, no vendor.mod),
# whose versions do not carry the engine's number; patches/vVERSION/module names it as PATH@VERSION.
if [[ -f $series_dir/module ]]; then
	read -r modline <"$series_dir/module"
	[[ $modline == *@* ]] || die "$series_dir/module must hold one line MODULE@VERSION, not '$modline'"
	module=${modline%@*}
	modversion=${modline#*@}
	modfile=go.mod
fi

# A cgo toolchain is needed (moby's btrfs driver and others use cgo); install it only when absent.
need_pkgs=()
command -v go >/dev/null || die "go not found in PATH (Go >= the go line of moby's vendor.mod is needed)"
command -v git >/dev/null || need_pkgs+=(git)
command -v gcc >/dev/null || need_pkgs+=(gcc libc6-dev)
if ((${#need_pkgs[@]})); then
	[[ $(id -u) -eq 0 ]] || die "missing ${need_pkgs[*]}; run as root to apt-get install them, or install them yourself"
	apt-get install -y "${need_pkgs[@]}" >&2 || die "apt-get install ${need_pkgs[*]} failed"
fi

# Never let go fetch a different toolchain behind our back; a too-old go must fail here. The moby
# trees live below this repository's go.work, which must not apply to them.
export GOTOOLCHAIN=local GO111MODULE=on GOFLAGS=-mod=readonly GOWORK=off
# shellcheck source=scripts/pins.bash
. "$repo/scripts/pins.bash"

# series_patches prints the patch files of the series in order: quilt format, one file name per
# line relative to the series directory, '#' starts a comment.
series_patches() {
	[[ -f $series ]] || return 0
	sed -e 's/#.*//' -e 's/[[:space:]]*$//' -e '/^$/d' "$series"
}

if [[ $mode != stock ]]; then
	mapfile -t patches < <(series_patches)
	((${#patches[@]})) || die "no patches for moby v$version yet: $series is missing or lists none. Add git format-patch files to $series_dir and name them in series, or build MODE=stock."
	for p in "${patches[@]}"; do
		[[ -f $series_dir/$p ]] || die "$series names $p, but $series_dir/$p does not exist"
	done
fi

# The moby source, from the Go module proxy only (never from GitHub).
info=$(cd / && go mod download -json "$module@$modversion" 2>&1) ||
	die "cannot download $module@$modversion through the Go module proxy (GOPROXY=$(go env GOPROXY)):
$info"
src=$(sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p' <<<"$info")
[[ -d $src ]] || die "go mod download gave no module directory:
$info"

pristine=$build_dir/moby-$version
if ! git -C "$pristine" rev-parse -q --verify refs/tags/pristine >/dev/null 2>&1; then
	echo "build-dockerd: preparing $pristine from $src" >&2
	rm -rf "$pristine"
	mkdir -p "$build_dir"
	cp -r "$src" "$pristine"
	chmod -R u+w "$pristine"
	(
		cd "$pristine"
		if [[ $modfile == vendor.mod ]]; then
			cp vendor.mod go.mod
			cp vendor.sum go.sum
			rm -rf vendor
		fi
		git init -q
		git add -A
		git -c user.name=build-dockerd -c user.email=build-dockerd@localhost \
			commit -q -m "moby v$version ($module@$modversion) from the Go module proxy, as a Go module"
		git tag pristine
	)
fi

# go_fetch runs a go command that may download modules and turns a proxy failure into a message
# that says so instead of a wall of "dial tcp".
go_fetch() {
	local err
	err=$(mktemp)
	if ! "$@" 2>"$err"; then
		if grep -qE 'proxy|dial tcp|lookup |no such host|i/o timeout|connection refused|TLS|x509' "$err"; then
			die "the Go module proxy (GOPROXY=$(go env GOPROXY)) is unreachable while running '$*':
$(cat "$err")"
		fi
		die "'$*' failed in $PWD:
$(cat "$err")"
	fi
	rm -f "$err"
}

# ldflags VERSION_STRING: what `docker version` reports for the daemon.
ldflags() {
	echo "-w -X $module/dockerversion.Version=$1 -X $module/dockerversion.GitCommit=$(git rev-parse --short HEAD)"
}

if [[ $mode == stock ]]; then
	cd "$pristine"
	[[ -z $(git status --porcelain) ]] || die "$pristine has local changes; remove it to start over"
	go_fetch go list -deps ./cmd/dockerd >/dev/null
	mkdir -p "$bin_dir"
	out=$bin_dir/dockerd-stock-$version
	CGO_ENABLED=1 go build -trimpath -ldflags "$(ldflags "$version")" -o "$out" ./cmd/dockerd
	echo "build-dockerd: built $out" >&2
	exit 0
fi

# patched and check: a fresh clone of the pristine tree, so every run applies the whole series to
# the released source and nothing else.
work=$build_dir/moby-$version-patched
rm -rf "$work"
git clone -q "$pristine" "$work"
cd "$work"
git config user.name build-dockerd
git config user.email build-dockerd@localhost
n=0
for p in "${patches[@]}"; do
	n=$((n + 1))
	if ! out=$(git am --quiet "$series_dir/$p" 2>&1); then
		git am --abort >/dev/null 2>&1 || true
		# git apply -v names the file and line and shows the hunk it searched for; when the
		# patch itself applies, git am failed on something else and says what.
		detail=$(git apply --check -v "$series_dir/$p" 2>&1) && detail=$out
		die "patch $n of ${#patches[@]}, $p, does not apply to moby v$version:
$detail"
	fi
done
echo "build-dockerd: applied ${#patches[@]} patches from $series" >&2

# vendor_nsdetach: add this module to the patched tree as a fork adds a dependency: the series
# requires it in vendor.mod, a replace points it at this checkout (its go.mod as it is), and moby's
# own vendoring step (go mod tidy, go mod vendor) brings it into vendor/, as a fork commits it. The
# build compiles the same module versions from the module cache (-mod=readonly), which shares the
# stock build's compile cache. Fails, naming each module, if moby's go line or any of its pins
# moves: the result would no longer be "moby v$version plus our patches".
vendor_nsdetach() {
	local modfile
	modfile=$(moby_modfile)
	grep -q "^[[:space:]]*$nsdetach_module " "$modfile" ||
		die "the series does not require $nsdetach_module in $modfile; its vendor patch is missing from $series"
	# The pins before: the released modfile (the series' require names a version that only the
	# replace below makes resolvable).
	git show "pristine:$modfile" >"$build_dir/pristine-$version.mod"
	git show "pristine:${modfile%.mod}.sum" >"$build_dir/pristine-$version.sum"
	pins_snapshot "$build_dir/pristine-$version.mod" >"$build_dir/pins-$version-before"
	add_nsdetach "$repo"
	go_fetch moby_vendor
	pins_snapshot "$modfile" >"$build_dir/pins-$version-after"
	pins_check "$build_dir/pins-$version-before" "$build_dir/pins-$version-after" \
		"adding $nsdetach_module (this checkout) to moby v$version"
	if [[ $modfile != go.mod ]]; then
		cp "$modfile" go.mod
		cp "${modfile%.mod}.sum" go.sum
	fi
}
vendor_nsdetach
echo "build-dockerd: vendored $nsdetach_module into moby v$version; no pin moved" >&2
mapfile -t ours < <(go list -deps ./cmd/dockerd | grep "^$nsdetach_module" || true)

# The import rule (docs/architecture.md): what moby imports from us must not import moby. A cycle would already
# have failed above; this also catches imports of moby packages that happen not to form one yet.
if ((${#ours[@]})); then
	back=$(go list -deps "${ours[@]}" | grep -E '^github\.com/(docker/docker|moby/moby)(/|$)' || true)
	[[ -z $back ]] || die "nsdetach packages vendored into moby (${ours[*]}) import moby, which the patch series cannot allow:
$back"
fi

if [[ $mode == check ]]; then
	# Compile the packages the series touches and moby's daemon and layer trees, where the call
	# sites are, without linking dockerd: API mismatches with this module show up here.
	mapfile -t pkgs < <(git diff --name-only pristine HEAD -- '*.go' | xargs -r -n1 dirname | sort -u | sed 's|^|./|')
	# moby v2 keeps the layer store under daemon/internal/layer.
	trees=(./daemon/...)
	[[ ! -d layer ]] || trees+=(./layer/...)
	CGO_ENABLED=1 go build -trimpath "${pkgs[@]}" "${trees[@]}" ||
		die "the patched tree does not compile (above); errors in github.com/nsdetach/nsdetach packages mean they need something newer than moby v$version pins (go $(awk '$1 == "go" { print $2; exit }' go.mod), the versions in its $(moby_modfile))"
	echo "build-dockerd: series applies and compiles (${#pkgs[@]} touched packages, ${trees[*]})" >&2
	exit 0
fi

mkdir -p "$bin_dir"
out=$bin_dir/dockerd-$version
CGO_ENABLED=1 go build -trimpath \
	-ldflags "$(ldflags "$version+nsdetach.$(git -C "$repo" rev-parse --short HEAD 2>/dev/null || echo dev)")" \
	-o "$out" ./cmd/dockerd
echo "build-dockerd: built $out" >&2
