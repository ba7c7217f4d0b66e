#!/usr/bin/env bash
# compare.sh — run the e2e scenario (run.sh) for the stock and the patched dockerd and print the
# RESULT lines side by side.
#
# usage: compare.sh [--version V] [--emulator OLDKERNEL] [--containers N] [--survivors K]
#                   [--storage overlay2|snapshotter] [--runc PATH] [NAME=DOCKERD ...]
#
# Columns: stock = bin/dockerd-stock-V and patched = bin/dockerd-V on this kernel, then, with
# --emulator, the same two under the old-kernel emulator (stock+oldkernel, patched+oldkernel), then
# any NAME=DOCKERD given (for example debian=/usr/sbin/dockerd), on this kernel. Run logs go to
# .build/e2e/NAME (NAME+snapshotter with --storage snapshotter; --storage and --runc go to run.sh). Assertions: on this kernel both builds remove every container and the patched
# one comes out clean (run.sh --expect removed / clean); under the emulator the stock build shows
# the incident (--expect incident) and the patched one comes out clean. The exit status is non-zero
# when an assertion fails or a run breaks.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
version=28.5.2
emulator=
containers=4
survivors=2
storage=overlay2
runc=
extra=()
while (($#)); do
	case $1 in
	--version) version=${2:?}; shift 2 ;;
	--emulator) emulator=${2:?}; shift 2 ;;
	--containers) containers=${2:?}; shift 2 ;;
	--survivors) survivors=${2:?}; shift 2 ;;
	--storage) storage=${2:?}; shift 2 ;;
	--runc) runc=${2:?}; shift 2 ;;
	*=*) extra+=("$1"); shift ;;
	*) sed -n '5,6p' "${BASH_SOURCE[0]}" | sed 's/^# //' >&2; exit 2 ;;
	esac
done
[[ $(id -u) -eq 0 ]] || { echo "compare: refusing to run as $(id -un): the e2e scenario must run as root (it starts dockerd and creates mount namespaces and overlay mounts)" >&2; exit 1; }

names=() results=() status=0
# run NAME DOCKERD EMULATOR [EXPECT]
run() {
	local name=$1 dockerd=$2 emu=$3 expect=${4:-} line rc=0
	[[ $storage == overlay2 ]] || name+=+$storage
	echo "== $name: $dockerd${emu:+ under $emu}${expect:+ (expect $expect)}" >&2
	line=$("$repo/integration/e2e/run.sh" --dockerd "$dockerd" ${emu:+--emulator "$emu"} \
		--containers "$containers" --survivors "$survivors" ${expect:+--expect "$expect"} \
		--storage "$storage" ${runc:+--runc "$runc"} \
		--logs "$repo/.build/e2e/$name" | tee >(cat >&2) | grep '^RESULT ') || rc=$?
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
[[ -x $patched ]] || { echo "compare: $patched missing; run make dockerd" >&2; exit 1; }
[[ -z $emulator || -x $emulator ]] || { echo "compare: no executable emulator at $emulator; run make oldkernel" >&2; exit 1; }
start=$SECONDS
run stock "$stock" "" removed
run patched "$patched" "" clean
if [[ -n $emulator ]]; then
	run stock+oldkernel "$stock" "$emulator" incident
	run patched+oldkernel "$patched" "$emulator" clean
fi
for e in "${extra[@]}"; do
	run "${e%%=*}" "${e#*=}" ""
done

# One row per RESULT key, one column per run.
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
echo "compare: ${#names[@]} runs in $((SECONDS - start))s; $( ((status)) && echo 'an assertion FAILED (see == lines above)' || echo 'every assertion held')"
exit "$status"
