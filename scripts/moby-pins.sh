#!/usr/bin/env bash
# moby-pins.sh [MODULE@VERSION...] — add github.com/nsdetach/nsdetach to pristine moby trees the
# way a fork does, and show that none of moby's pins moves.
#
# For each moby (default: the three below) from the Go module proxy: record its go line and
# `go list -m all`; add a package that imports what the patch series imports (mountns, overlay2, snapshotter,
# daemon, layer), require this module replaced by this checkout, run moby's vendoring step (go mod
# tidy, go mod vendor); record again and compare. Prints one row per moby with the lines of
# nsdetach that landed in vendor/, and fails, naming each module, if anything but nsdetach moved.
#
# Environment: BUILD_DIR (default REPO/.build) holds the trees (pins-*), kept for inspection.
set -euo pipefail

die() {
	printf 'moby-pins: %s\n' "$*" >&2
	exit 1
}

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build_dir=${BUILD_DIR:-$repo/.build}
# shellcheck source=scripts/pins.bash
. "$repo/scripts/pins.bash"
export GOWORK=off GOTOOLCHAIN=local GO111MODULE=on GOFLAGS=-mod=readonly

((${#@})) || set -- github.com/docker/docker@v26.1.4+incompatible github.com/docker/docker@v28.5.2+incompatible \
	github.com/moby/moby/v2@v2.0.0-beta.24

# The packages the patch series imports; patches/vVERSION/*.patch import exactly these.
imported=(mountns overlay2 daemon layer snapshotter)

rows=()
failed=0
for target in "$@"; do
	info=$(cd / && go mod download -json "$target") || die "cannot download $target through the Go module proxy: $info"
	src=$(sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p' <<<"$info")
	[[ -d $src ]] || die "go mod download gave no module directory for $target"
	tree=$build_dir/pins-${target//[\/@+]/_}
	rm -rf "$tree"
	mkdir -p "$build_dir"
	cp -r "$src" "$tree"
	chmod -R u+w "$tree"
	cd "$tree"
	modfile=$(moby_modfile)
	# -modfile needs a go.mod to find the module root; moby's hack/with-go-mod.sh writes one too.
	[[ -f go.mod ]] || cp vendor.mod go.mod
	pins_snapshot "$modfile" >pins-before

	mkdir nsdetach_pins
	{
		echo '// Package nsdetachpins imports what the nsdetach patch series imports.'
		echo 'package nsdetachpins'
		echo
		echo 'import ('
		for p in "${imported[@]}"; do printf '\t_ "%s/%s"\n' "$nsdetach_module" "$p"; done
		echo ')'
	} >nsdetach_pins/imports.go
	add_nsdetach "$repo"
	moby_vendor >moby-vendor.log 2>&1 || { cat moby-vendor.log >&2; die "moby's vendoring step failed for $target"; }
	pins_snapshot "$modfile" >pins-after

	moved=$(pins_moved pins-before pins-after)
	nmoved=none
	if [[ -n $moved ]]; then
		failed=1
		nmoved=$(grep -c . <<<"$moved")
		printf 'moby-pins: adding %s to %s moves:\n%s\n' "$nsdetach_module" "$target" "$moved" >&2
	fi
	vendored=$(find "vendor/$nsdetach_module" -type f -name '*.go' -print0 | xargs -0 cat | wc -l)
	pkgs=$(find "vendor/$nsdetach_module" -type f -name '*.go' -printf '%h\n' | sort -u | wc -l)
	rows+=("$(printf '| %s | %s | %s | %s | %s |' "$target" "$(awk '$1 == "go" { print $2 }' pins-before)" \
		"$(awk '$1 == "go" { print $2 }' pins-after)" "$nmoved" \
		"$vendored lines in $pkgs packages")")
	cd "$repo"
done

echo '| moby | go line before | after | pins moved besides nsdetach | nsdetach in vendor/ (.go files) |'
echo '|---|---|---|---|---|'
printf '%s\n' "${rows[@]}"
exit "$failed"
