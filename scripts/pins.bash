# pins.bash: add github.com/nsdetach/nsdetach to a moby tree the way a fork does, and check that
# doing so moves none of moby's pins. Sourced by build-dockerd.sh and moby-pins.sh; the caller
# defines die() and exports GOWORK=off (the moby trees live below this repository's go.work).

nsdetach_module=github.com/nsdetach/nsdetach

# moby_modfile: the file that holds moby's requirements in the current directory: vendor.mod
# (github.com/docker/docker, not a Go module) or go.mod (github.com/moby/moby/v2, Engine 29 on).
moby_modfile() {
	if [[ -f vendor.mod ]]; then echo vendor.mod; else echo go.mod; fi
}

# pins_snapshot MODFILE: moby's go and toolchain lines ("go 1.21") and its whole module graph
# (`go list -m all`), one "module version" per line, sorted. nsdetach's own modules are left out:
# they are the ones expected to appear.
pins_snapshot() {
	local modfile=$1 list
	list=$(go list -modfile="$modfile" -mod=readonly -m -f '{{.Path}} {{.Version}}' all) ||
		die "go list -m all failed in $PWD (modfile $modfile)"
	{
		awk '$1 == "go" || $1 == "toolchain" { print $1, $2 }' "$modfile"
		grep -v "^${nsdetach_module}[/ ]" <<<"$list"
	} | sort
}

# pins_moved BEFORE AFTER: each difference between two pins_snapshot files, one line per module (or
# go/toolchain line) that changed, appeared or went. Empty when nothing moved.
pins_moved() {
	awk 'NR == FNR { before[$1] = $2; next } { after[$1] = $2 }
		END {
			for (m in before) if (!(m in after)) print m ": " before[m] " -> (gone)"
				else if (before[m] != after[m]) print m ": " before[m] " -> " after[m]
			for (m in after) if (!(m in before)) print m ": (added) " after[m]
		}' "$1" "$2" | sort
}

# add_nsdetach DIR: require this module, replaced by the checkout at DIR, in moby's modfile. The
# module's own go.mod is used as it is: what it requires is what a fork gets.
add_nsdetach() {
	local modfile
	modfile=$(moby_modfile)
	go mod edit -modfile="$modfile" -require="$nsdetach_module@v0.0.0" -replace="$nsdetach_module=$1"
}

# moby_vendor: moby's own vendoring step for its root module. hack/vendor.sh runs `go mod tidy` and
# `go mod vendor` (on vendor.mod through -modfile, with the -compat flag it names, before Engine
# 29; on go.mod since); its other halves (man/, and api/ and client/ in Engine 29) are modules of
# their own that the module zip leaves out, so only the root module's half runs here.
moby_vendor() {
	local modfile compat
	modfile=$(moby_modfile)
	compat=$(grep -o -- '-compat [0-9.]*' hack/vendor.sh 2>/dev/null | head -n1 || true)
	# shellcheck disable=SC2086 # $compat is a flag and its value, or nothing
	go mod tidy -modfile="$modfile" $compat && go mod vendor -modfile="$modfile"
}

# pins_check BEFORE AFTER WHAT: fail, naming each module and line that moved, unless the only
# change between the two snapshots is nsdetach's own module(s).
pins_check() {
	local moved
	moved=$(pins_moved "$1" "$2")
	[[ -z $moved ]] || die "$3 moves moby's pins (github.com/nsdetach/nsdetach's go.mod asks for more than moby has):
$moved"
}
