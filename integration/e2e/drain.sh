#!/usr/bin/env bash
# drain.sh — a node drain after a restart on an old kernel: N containers started before a
# live-restore restart are stopped and removed by the patched dockerd under the old-kernel emulator.
#
# usage: drain.sh [--dockerd PATH] [--emulator PATH] [--containers N] [--version V]
#
# One run of integration/e2e/run.sh (--method stop+rm, 2 survivors, dockerd with --debug); prints
# the number of removals and failures, the total and per-removal `docker rm` time (run.sh times each
# rm on its own; the stops before them are one batch), and the scans the library made: each mount
# namespace scan logs one debug line ("mountns: N namespaces scanned, M hold the target", with the
# target), counted in dockerd #2's log and grouped by what was scanned for. Defaults: bin/dockerd-V
# (make dockerd), bin/oldkernel (make oldkernel), 100 containers, V=28.5.2. Logs stay in
# .build/drain.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
version=28.5.2
containers=100
dockerd=
emulator=$repo/bin/oldkernel
while (($#)); do
	case $1 in
	--dockerd) dockerd=${2:?}; shift 2 ;;
	--emulator) emulator=${2:?}; shift 2 ;;
	--containers) containers=${2:?}; shift 2 ;;
	--version) version=${2:?}; shift 2 ;;
	*) sed -n '5p' "${BASH_SOURCE[0]}" | sed 's/^# //' >&2; exit 2 ;;
	esac
done
[[ $(id -u) -eq 0 ]] || { echo "drain: run it as root: it starts dockerd and creates mount namespaces" >&2; exit 1; }
dockerd=${dockerd:-$repo/bin/dockerd-$version}
for b in "$dockerd" "$emulator"; do
	[[ -x $b ]] || { echo "drain: $b missing; run make dockerd oldkernel" >&2; exit 1; }
done

out=$repo/.build/drain
rm -rf "$out"
mkdir -p "$out"
echo "== $(date -u +%FT%TZ) $(uname -r); $(basename "$dockerd") under $(basename "$emulator"), $containers containers; uptime: $(uptime)"
start=$SECONDS
"$repo/integration/e2e/run.sh" --dockerd "$dockerd" --emulator "$emulator" --containers "$containers" \
	--survivors 2 --method stop+rm --logs "$out/logs" >"$out/run.log" 2>"$out/run.err" ||
	{ echo "drain: run.sh failed; $out/run.err:" >&2; tail -n 20 "$out/run.err" >&2; exit 1; }
echo "== took $((SECONDS - start))s; uptime: $(uptime)"
grep '^RESULT ' "$out/run.log"

removals=$(grep -c '^REMOVAL ' "$out/run.log")
failed=$(grep -c '^REMOVAL .* ok=0 ' "$out/run.log" || true)
rm_ms=$(sed -n 's/^REMOVAL .* ms=\([0-9]*\) .*/\1/p' "$out/run.log" | awk '{ s += $1 } END { print s + 0 }')
log=$out/logs/dockerd-2.log
[[ -f $log ]] || { echo "drain: no dockerd #2 log in $out/logs" >&2; exit 1; }
# The scan's debug line carries target=PATH: the layer's merged directory (Put), the layer
# directory (Remove), the container's directory (cleanupContainer), ...
grep 'mountns: [0-9]* namespaces scanned' "$log" |
	sed -n 's/.*target="\{0,1\}\([^" ]*\).*/\1/p' >"$out/scans.txt"
scans=$(wc -l <"$out/scans.txt")
echo
printf 'removals %d (failed %d); docker rm total %d ms, %s ms per removal\n' "$removals" "$failed" "$rm_ms" \
	"$(awk -v t="$rm_ms" -v n="$removals" 'BEGIN { printf "%.1f", n ? t / n : 0 }')"
printf 'scans by dockerd #2 (stops, removals and the survivors'"'"' restore): %d, %s per removal\n' "$scans" \
	"$(awk -v s="$scans" -v n="$removals" 'BEGIN { printf "%.2f", n ? s / n : 0 }')"
echo "scans by target:"
sed -E 's#/[0-9a-f]{64}(-init)?#/<id>\1#g' "$out/scans.txt" | sed "s#^$out##" | sort | uniq -c | sort -rn
((failed == 0)) || { echo "drain: $failed removals failed" >&2; exit 1; }
