#!/usr/bin/env bash
# compare.sh — run the e2e scenario (run.sh) for the stock and the patched dockerd and print the
# RESULT lines side by side.
#
# usage: compare.sh [--version V] [--emulator OLDKERNEL] [--containers N] [NAME=DOCKERD ...]
#
# Columns: stock = bin/dockerd-stock-V, patched = bin/dockerd-V (skipped when not built), then any
# NAME=DOCKERD given (for example debian=/usr/sbin/dockerd). Run logs go to .build/e2e/NAME.
# Assertions: the patched build must come out clean; with --emulator the stock build must show the
# incident (without it, a kernel that detaches on rmdir hides the incident, so stock is only
# reported). The exit status is non-zero when an assertion fails or a run breaks.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
version=28.5.2
emulator=()
containers=4
extra=()
while (($#)); do
	case $1 in
	--version) version=${2:?}; shift 2 ;;
	--emulator) emulator=(--emulator "${2:?}"); shift 2 ;;
	--containers) containers=${2:?}; shift 2 ;;
	*=*) extra+=("$1"); shift ;;
	*) sed -n '5p' "${BASH_SOURCE[0]}" | sed 's/^# //' >&2; exit 2 ;;
	esac
done

names=() results=() status=0
# run NAME DOCKERD [EXPECT]
run() {
	local name=$1 dockerd=$2 expect=${3:-} line rc=0
	echo "== $name: $dockerd${expect:+ (expect $expect)}" >&2
	line=$("$repo/integration/e2e/run.sh" --dockerd "$dockerd" "${emulator[@]}" --containers "$containers" \
		${expect:+--expect "$expect"} --logs "$repo/.build/e2e/$name" | tee /dev/stderr | grep '^RESULT ') || rc=$?
	if ((rc)); then
		echo "== $name: run.sh exited $rc" >&2
		status=1
	fi
	names+=("$name")
	results+=("${line:-RESULT outcome=broken} exit=$rc")
}

stock=$repo/bin/dockerd-stock-$version
patched=$repo/bin/dockerd-$version
[[ -x $stock ]] || { echo "compare: $stock missing; run make dockerd-stock" >&2; exit 1; }
run stock "$stock" "${emulator:+incident}"
if [[ -x $patched ]]; then
	run patched "$patched" clean
else
	echo "== patched: $patched not built (make dockerd), column skipped" >&2
fi
for e in "${extra[@]}"; do
	run "${e%%=*}" "${e#*=}"
done

# One row per RESULT key, one column per build.
for i in "${!names[@]}"; do
	printf '%s %s\n' "${names[$i]}" "${results[$i]#RESULT }"
done | awk '
	{
		col[++n] = $1
		for (f = 2; f <= NF; f++) {
			split($f, kv, "=")
			if (!(kv[1] in seen)) { seen[kv[1]] = 1; keys[++k] = kv[1] }
			val[n, kv[1]] = substr($f, length(kv[1]) + 2)
		}
	}
	END {
		printf "%-20s", ""
		for (c = 1; c <= n; c++) printf " %-22s", col[c]
		printf "\n"
		for (r = 1; r <= k; r++) {
			printf "%-20s", keys[r]
			for (c = 1; c <= n; c++) printf " %-22s", ((c, keys[r]) in val) ? val[c, keys[r]] : "-"
			printf "\n"
		}
	}'
exit "$status"
