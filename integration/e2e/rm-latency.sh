#!/usr/bin/env bash
# rm-latency.sh — `docker rm` latency after a live-restore restart, stock vs patched dockerd, in one run.
#
# usage: rm-latency.sh [--version V] [--containers N] [--rounds R] [--method stop+rm|rm-f]
#                      [--emulator OLDKERNEL] [--storage overlay2|snapshotter] [--runc PATH]
#
# Each run is integration/e2e/run.sh with N containers (default 50) and 2 survivors: the containers
# are started, dockerd is restarted into a new mount namespace, and each removal is timed on its
# own. The survivors keep running through the removals, as other pods do on a node, so the old
# mount namespace stays alive however the removed containers are stopped (without them, stopping
# every container first lets that namespace die, and with it the incident). --method stop+rm (the default) stops every container first and times `docker rm` (layer and
# container directory removal); rm-f times `docker rm -f` of the running container, which also
# kills it and unmounts its layer (overlay2 Put). On this kernel the two
# builds run R rounds (default 2) in ABBA order (stock, patched, patched, stock, ...), so that drift
# of the machine does not favour either; with --emulator each build then runs once more under the
# old-kernel emulator, where the stock build's removals fail after its retry loop (reported, not a
# speed-up). Per build and kernel it prints the number of removals, how many failed, and the total,
# mean, median, 90th percentile and maximum latency in ms; then patched/stock ratios. Exit status 1
# when the patched build's mean on this kernel is more than 10% above the stock build's, or a
# removal fails on this kernel.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
version=28.5.2
containers=50
rounds=2
method=stop+rm
emulator=
storage=overlay2
runc=
while (($#)); do
	case $1 in
	--version) version=${2:?}; shift 2 ;;
	--containers) containers=${2:?}; shift 2 ;;
	--rounds) rounds=${2:?}; shift 2 ;;
	--method) method=${2:?}; shift 2 ;;
	--emulator) emulator=${2:?}; shift 2 ;;
	--storage) storage=${2:?}; shift 2 ;;
	--runc) runc=${2:?}; shift 2 ;;
	*) sed -n '4,5p' "${BASH_SOURCE[0]}" | sed 's/^# //' >&2; exit 2 ;;
	esac
done
[[ $(id -u) -eq 0 ]] || { echo "rm-latency: refusing to run as $(id -un): it starts dockerd and creates mount namespaces; run it as root" >&2; exit 1; }
[[ $rounds =~ ^[1-9][0-9]*$ ]] || { echo "rm-latency: --rounds wants a positive number" >&2; exit 2; }
case $method in stop+rm | rm-f) ;; *) echo "rm-latency: --method stop+rm or rm-f" >&2; exit 2 ;; esac
stock=$repo/bin/dockerd-stock-$version
patched=$repo/bin/dockerd-$version
for b in "$stock" "$patched" ${emulator:+"$emulator"}; do
	[[ -x $b ]] || { echo "rm-latency: $b missing; run make dockerd-stock dockerd oldkernel" >&2; exit 1; }
done

out=$repo/.build/rm-latency-$method
[[ $storage == overlay2 ]] || out+=-$storage
rm -rf "$out"
mkdir -p "$out"
# measure LABEL DOCKERD [EMULATOR]: one run.sh run; its REMOVAL lines go to $out/LABEL.removals
# as "ok ms", appended across rounds.
measure() {
	local label=$1 dockerd=$2 emu=${3:-} n
	n=$(find "$out" -name "$label.run*.log" | wc -l)
	echo "== $label round $((n + 1)): $(basename "$dockerd")${emu:+ under $(basename "$emu")} (load average $(cut -d' ' -f1-3 /proc/loadavg))" >&2
	loads+=("$(cut -d' ' -f1 /proc/loadavg)")
	"$repo/integration/e2e/run.sh" --dockerd "$dockerd" ${emu:+--emulator "$emu"} --containers "$containers" \
		--survivors 2 --method "$method" --storage "$storage" ${runc:+--runc "$runc"} >"$out/$label.run$n.log" 2>"$out/$label.run$n.err" ||
		{ echo "rm-latency: run.sh failed for $label; $out/$label.run$n.err:" >&2; tail -n 20 "$out/$label.run$n.err" >&2; exit 1; }
	sed -n 's/^REMOVAL .* ok=\([01]\) ms=\([0-9]*\) .*/\1 \2/p' "$out/$label.run$n.log" >>"$out/$label.removals"
	grep '^RESULT ' "$out/$label.run$n.log" >&2
}

start=$SECONDS
# The 1-minute load average before each run: the machine may be shared, and the summary says so.
loads=()
for r in $(seq "$rounds"); do
	if ((r % 2)); then
		measure stock "$stock"
		measure patched "$patched"
	else
		measure patched "$patched"
		measure stock "$stock"
	fi
done
if [[ -n $emulator ]]; then
	measure stock+oldkernel "$stock" "$emulator"
	measure patched+oldkernel "$patched" "$emulator"
fi

# stats FILE prints "n failed total mean median p90 max" of the "ok ms" lines in FILE.
stats() {
	sort -k2,2n "$1" | awk '
		{ ms[NR] = $2; total += $2; if ($1 != 1) failed++ }
		END {
			p90 = int(NR * 0.9 + 0.999); if (p90 < 1) p90 = 1
			med = NR % 2 ? ms[(NR + 1) / 2] : (ms[NR / 2] + ms[NR / 2 + 1]) / 2
			printf "%d %d %d %.1f %.1f %d %d\n", NR, failed, total, total / NR, med, ms[p90], ms[NR]
		}'
}

# The summary also goes to $out/summary.txt.
exec > >(tee "$out/summary.txt")
echo
printf '%-18s %6s %7s %10s %9s %9s %7s %7s\n' build removals failed total_ms mean_ms median_ms p90_ms max_ms
labels=(stock patched)
[[ -z $emulator ]] || labels+=(stock+oldkernel patched+oldkernel)
declare -A mean median failed
for l in "${labels[@]}"; do
	read -r n f t m med p mx <<<"$(stats "$out/$l.removals")"
	mean[$l]=$m median[$l]=$med failed[$l]=$f
	printf '%-18s %6s %7s %10s %9s %9s %7s %7s\n' "$l" "$n" "$f" "$t" "$m" "$med" "$p" "$mx"
done
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", a / b }'; }
echo
echo "patched/stock on this kernel: mean $(ratio "${mean[patched]}" "${mean[stock]}"), median $(ratio "${median[patched]}" "${median[stock]}") ($rounds rounds x $containers containers each, ABBA order, $method, $storage)"
[[ -z $emulator ]] || echo "patched/stock under the emulator: mean $(ratio "${mean[patched+oldkernel]}" "${mean[stock+oldkernel]}") (stock failed ${failed[stock+oldkernel]} of its removals, patched ${failed[patched+oldkernel]})"
echo "rm-latency: took $((SECONDS - start))s on $(nproc) CPUs, 1-minute load average before each run: ${loads[*]}; raw data in $out"
status=0
if awk -v p="${mean[patched]}" -v s="${mean[stock]}" 'BEGIN { exit !(p > 1.10 * s) }'; then
	echo "rm-latency: FAIL: the patched mean is more than 10% above stock's" >&2
	status=1
fi
if ((failed[stock] + failed[patched])); then
	echo "rm-latency: FAIL: removals failed on this kernel (stock ${failed[stock]}, patched ${failed[patched]})" >&2
	status=1
fi
exit "$status"
