#!/usr/bin/env bash
# bench.sh — the scan and detach benchmarks on one fixture (200 mount namespaces x 10 processes x
# 20 mounts), this tree against a base revision, and the whole-process side-by-side; one command.
#
# usage: scripts/bench.sh [--base REV] [--count N] [--rounds R] [--surface-3.10]
#
# 1. Builds the mountns benchmarks of this tree and of REV (default: the merge base with main, else
#    HEAD~1; `git archive`, nothing is checked out) and runs them N times each (default 6),
#    interleaved (base, new, new, base, ...), then compares them with benchstat: ns/op is wall time,
#    cpu-ns/op (this tree only) the CPU time of the scanning process, which a busy machine disturbs
#    less. Benchmarks: FindHolders (200 namespaces hold the target), FindNothing (none does),
#    Detach1000 (1,000 mounts under the root over 200 namespaces, scan included), Grep, and the
#    floors of any scan that names the holders' processes (this tree only): FloorWalk (one readlink
#    of /proc/PID/ns/mnt per process) and FloorTables (one mountinfo read per namespace, no parse).
# 2. Times whole processes in R interleaved rounds (default 21) on the same fixture:
#    `nsdetach holders PATH --json` of this tree and of REV against `grep -l PATH /proc/*/mountinfo`,
#    medians and ratios (mountns TestSideBySide), next to the floors: `nsdetach version` (the same
#    binary starting and exiting, no scan) and /bin/true (a process). Both builds are made as
#    `make static` makes the one the image ships (no cgo, stripped).
# --surface-3.10 runs every part under `bin/oldkernel -surface-3.10 -rmdir-detaches` in a pid
# namespace of its own (scripts/test-surface-310.sh says why): the system calls of Linux 3.10, so
# the fallbacks of both trees are what is timed. A benchmark that fails there is reported, not timed.
# The load average is printed with each part: figures taken on a busy machine say so.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" != 0 ]; then
	echo "bench: needs root (the fixture is 200 real mount namespaces); run: sudo make bench" >&2
	exit 2
fi
base='' count=6 rounds=21 wrap=()
while (($#)); do
	case $1 in
	--surface-3.10)
		make -s oldkernel >/dev/null
		wrap=("$PWD/bin/oldkernel" -surface-3.10 -rmdir-detaches -- unshare --pid --fork --mount-proc)
		shift ;;
	--base) base=${2:?}; shift 2 ;;
	--count) count=${2:?}; shift 2 ;;
	--rounds) rounds=${2:?}; shift 2 ;;
	*) sed -n '4p' "$0" | sed 's/^# //' >&2; exit 2 ;;
	esac
done
if [ -z "$base" ]; then
	base=$(git merge-base HEAD main 2>/dev/null || true)
	if [ -z "$base" ] || [ "$base" = "$(git rev-parse HEAD)" ]; then
		base=$(git rev-parse HEAD~1)
	fi
fi
# benchstat from the module proxy, pinned.
benchstat=golang.org/x/perf/cmd/benchstat@v0.0.0-20260908200009-22c9c6c9d4da

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# Whatever a test binary leaves in its temp dir (a base revision's fixture) goes with ours.
export TMPDIR=$tmp
echo "== $(date -u +%FT%TZ) $(uname -r), $(nproc) CPUs; this tree $(git rev-parse --short HEAD)$(git diff --quiet HEAD -- . || echo '+changes'), base $(git rev-parse --short "$base")"
echo "== uptime: $(uptime)"
if ((${#wrap[@]})); then echo "== on Linux 3.10's system calls: ${wrap[*]}"; fi

mkdir "$tmp/base"
git archive "$base" | tar -x -C "$tmp/base"
go test -c -o "$tmp/new.test" ./mountns
(cd "$tmp/base" && go test -c -o "$tmp/base.test" ./mountns)
static() { CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" "$@"; } # as `make static`
static -o "$tmp/nsdetach" ./cmd/nsdetach
(cd "$tmp/base" && static -o "$tmp/nsdetach-base" ./cmd/nsdetach)

bench() { # bench BINARY OUT: one run of every benchmark, appended to OUT; failures are shown
	(cd mountns && "${wrap[@]}" "$1" -test.run '^$' -test.bench 'FindHolders|FindNothing|Detach1000|Grep|Floor' \
		-test.benchtime "${BENCH_TIME:-10x}" -test.count 1 2>&1) >"$tmp/run.txt" || true
	grep -E '^(Benchmark|goos|goarch|pkg|cpu)' "$tmp/run.txt" | grep -v -- '--- FAIL' >>"$2" || true
	if grep -q -- '--- FAIL' "$tmp/run.txt"; then
		echo "   $(basename "$1"): $(grep -A1 -- '--- FAIL' "$tmp/run.txt" | tr -s ' \n' ' ' | cut -c1-400)"
	fi
}
for ((i = 0; i < count; i++)); do
	if ((i % 2 == 0)); then
		bench "$tmp/base.test" "$tmp/base.txt"; bench "$tmp/new.test" "$tmp/new.txt"
	else
		bench "$tmp/new.test" "$tmp/new.txt"; bench "$tmp/base.test" "$tmp/base.txt"
	fi
	echo "   run $((i + 1))/$count done; uptime: $(uptime)"
done
echo
echo "== benchstat base ($(git rev-parse --short "$base")) vs this tree, $count interleaved runs each"
go run "$benchstat" base="$tmp/base.txt" new="$tmp/new.txt"
echo
echo "== whole process, $rounds interleaved rounds; uptime: $(uptime)"
(cd mountns && NSDETACH_BIN="$tmp/nsdetach" NSDETACH_BASE_BIN="$tmp/nsdetach-base" NSDETACH_ROUNDS="$rounds" \
	"${wrap[@]}" "$tmp/new.test" -test.run '^TestSideBySide$' -test.v 2>&1) | grep -E 'bench_test.go|^(--- |ok|FAIL)' | sed 's/^ *bench_test.go:[0-9]*: /  /'
echo "== uptime: $(uptime)"
