#!/usr/bin/env bash
# daemonset.sh — the DaemonSet's image, built and run by a real dockerd the way the pod spec says.
#
# usage: daemonset.sh --nsdetach STATIC_BIN --data DIR --dockerd-pid PID --work DIR
#                     [--docker PATH] [--probe-image IMAGE] [--want-stale] SURVIVOR_ID...
#
# run.sh --daemonset calls it once the incident has left leaks (after the restart and the
# removals), with DOCKER_HOST set to its private dockerd. It
#   1. builds the image from the repository's Dockerfile with that dockerd and the classic
#      builder, offline: the Go build stage runs on the host (`make static`, the target the
#      Dockerfile's build stage runs), and a local image named after that stage ("build",
#      imported from a tarball of the binary) stands in for it; the final stage is the
#      Dockerfile's own, verbatim;
#   2. takes the docker run arguments from deploy/kubernetes/nsdetach-daemonset.yaml through
#      deploy/dockerrun (host pid, the capabilities, read-only root, the data root read-only
#      with rslave propagation, `serve --detach-stale` ...), the data root moved to DIR;
#   3. scans from the host first (bin/nsdetach-static scan), starts a probe container, runs
#      the pod, and asserts: /metrics reports what the host scan found (pinned, and the stale
#      ones as detached), the stale mounts are gone from their namespaces once /healthz first
#      answers (the first pass; well within one --interval), the pinned ones stay, the
#      survivors keep running, every mount under DIR in the pod's namespace is a replica of
#      one in dockerd's, and removing the probe leaves nothing in the pod's namespace;
#   4. runs the same pod without host pid and without SYS_PTRACE: each must log why and
#      answer 503 on /healthz.
# --want-stale fails the run when the host scan finds no stale leak (nothing to detach).
# The last line on stdout is "DAEMONSET key=value ...". Exit status: 0 ok, 1 an assertion
# failed, 2 usage, 3 the harness itself failed. Containers it started are removed on exit.
set -euo pipefail

die() {
	printf 'daemonset: %s\n' "$*" >&2
	exit 3
}
log() { printf 'daemonset: %s\n' "$*" >&2; }
usage() {
	sed -n '4,5p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2
	exit 2
}

static='' data='' dockerd_pid='' work='' docker_cli=docker probe_image=nsdetach-busybox want_stale=0
while (($#)); do
	case $1 in
	--nsdetach) static=${2:?}; shift 2 ;;
	--data) data=${2:?}; shift 2 ;;
	--dockerd-pid) dockerd_pid=${2:?}; shift 2 ;;
	--work) work=${2:?}; shift 2 ;;
	--docker) docker_cli=${2:?}; shift 2 ;;
	--probe-image) probe_image=${2:?}; shift 2 ;;
	--want-stale) want_stale=1; shift ;;
	-h | --help) usage ;;
	-*) log "unknown argument $1"; usage ;;
	*) break ;;
	esac
done
survivors=("$@")
[[ -n $static && -n $data && -n $dockerd_pid && -n $work ]] || usage
[[ -x $static ]] || die "no executable nsdetach at $static (make static)"
file -L "$static" | grep -q 'statically linked' || die "$static is not statically linked: the image has no libc"
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
mkdir -p "$work"

failures=()
fail() {
	log "FAIL: $*"
	failures+=("${1%%:*}")
}

containers=()
cleanup() {
	local rc=$? c
	set +e
	for c in "${containers[@]}"; do
		timeout 60 "$docker_cli" rm -f "$c" >/dev/null 2>&1
	done
	exit "$rc"
}
trap cleanup EXIT

# 1. The image.
version=$(<"$repo/VERSION")
(cd "$repo" && go build -o "$work/dockerrun" ./deploy/dockerrun) || die "go build ./deploy/dockerrun failed"
dockerrun() { (cd "$repo" && "$work/dockerrun" -data-root "$data" "$@"); }
image=$(dockerrun image) || die "deploy/dockerrun: the DaemonSet does not translate to docker run"
mkdir -p "$work/build/src/bin" "$work/context"
cp "$static" "$work/build/src/bin/nsdetach-static"
grep -c '^COPY --from=build /src/bin/nsdetach-static /nsdetach$' "$repo/Dockerfile" | grep -qx 1 ||
	die "the Dockerfile's final stage no longer copies /src/bin/nsdetach-static from the stage \"build\"; update this script"
tar -C "$work/build" -c src | "$docker_cli" import - build >/dev/null || die "docker import of the build stage failed"
# The final stage: from the last FROM to the end, as written.
awk '/^FROM /{n=NR} {line[NR]=$0} END {for (i=n; i<=NR; i++) print line[i]}' "$repo/Dockerfile" >"$work/context/Dockerfile"
DOCKER_BUILDKIT=0 "$docker_cli" build -q --build-arg NSDETACH_VERSION="$version" -t "$image" "$work/context" >/dev/null ||
	die "docker build of the Dockerfile's final stage failed"
log "built $image from the Dockerfile's final stage (FROM $(awk '/^FROM /{print $2; exit}' "$work/context/Dockerfile"))"
if out=$("$docker_cli" run --rm --network none --entrypoint /bin/sh "$image" -c true 2>&1); then
	fail "no_shell: the image runs /bin/sh"
else
	log "the image has no shell: $(tail -n1 <<<"$out")"
fi
if "$static" version >/dev/null 2>&1; then
	got=$("$docker_cli" run --rm --network none "$image" version 2>&1) || true
	[[ $got == *"$version"* ]] || fail "version: the image's nsdetach version says '$got', want $version"
fi

mapfile -t argv < <(dockerrun run)
((${#argv[@]})) || die "deploy/dockerrun run printed nothing"
port=$(dockerrun port)
healthz=$(dockerrun healthz)
log "the DaemonSet's pod as docker run: ${argv[*]}"

# http_get PID PATH prints the HTTP status code, then the body, of GET PATH on the pod's port,
# inside the network namespace of PID (a pod has its own; nothing is published).
http_get() {
	# shellcheck disable=SC2016 # the inner script's own $1 and $2
	nsenter --net="/proc/$1/ns/net" bash -c '
		exec 3<>"/dev/tcp/127.0.0.1/$1" || exit 1
		printf "GET %s HTTP/1.0\r\nHost: localhost\r\n\r\n" "$2" >&3
		sed -e "s/\r$//" <&3 | awk "NR == 1 { print \$2; next } body { print } /^$/ { body = 1 }"' _ "$port" "$2" 2>/dev/null
}

# wait_http NAME PID: wait until the pod answers on the probes' path; prints the answer.
wait_http() {
	local out
	for _ in $(seq 600); do
		if out=$(http_get "$2" "$healthz") && [[ -n $out ]]; then
			echo "$out"
			return 0
		fi
		[[ $("$docker_cli" inspect -f '{{.State.Running}}' "$1" 2>/dev/null) == true ]] || break
		sleep 0.2
	done
	"$docker_cli" logs "$1" >&2 2>&1
	return 1
}

# run_pod NAME [DROP_FLAG]: docker run the pod, without DROP_FLAG if given; prints its pid. The
# caller adds NAME to containers (this runs in a subshell).
run_pod() {
	local a args=()
	for a in "${argv[@]}"; do
		[[ -n ${2:-} && $a == "$2" ]] || args+=("$a")
	done
	"$docker_cli" run -d --name "$1" "${args[@]}" >/dev/null || die "docker run of the pod ($1) failed"
	"$docker_cli" inspect -f '{{.State.Pid}}' "$1"
}

# mounts_of PID prints "mountpoint major:minor" of the mounts under the data root in PID's
# mount namespace (the data root's own bind excepted).
mounts_of() {
	awk -v root="$data/" '$5 "/" != root && index($5 "/", root) == 1 { print $5, $3 }' "/proc/$1/mountinfo" | sort -u
}

# 2. What the host sees before the pod starts: "verdict namespace-pid mountpoint" per leak.
"$static" scan --all --root "$data" >"$work/scan-before.txt" 2>&1 || true
scan_leaks() {
	awk '/^mnt:\[/ { pid = ""; for (i = 2; i <= NF; i++) if ($i ~ /^[0-9]+$/) { pid = $i; break } }
		($1 == "stale" || $1 == "pinned") && pid != "" { print $1, pid, $2 }' "$1"
}
scan_leaks "$work/scan-before.txt" >"$work/leaks-before.txt"
stale_before=$(grep -c '^stale ' "$work/leaks-before.txt" || true)
pinned_before=$(grep -c '^pinned ' "$work/leaks-before.txt" || true)
log "host scan: $(grep '^summary:' "$work/scan-before.txt")"
((stale_before + pinned_before > 0)) || fail "leaks: the host scan finds no leak, so the pod has nothing to report (run it where the incident leaves leaks)"
((want_stale == 0 || stale_before > 0)) || fail "stale: the host scan finds no stale leak to detach"

# The same pod, running `scan --all` instead of serve (it changes nothing): what the pod sees, for
# the report when its metrics and the host's scan disagree.
scan_argv=()
for a in "${argv[@]}"; do
	[[ $a == serve ]] && break
	scan_argv+=("$a")
done
"$docker_cli" run --rm "${scan_argv[@]}" scan --all --root="$data" >"$work/scan-pod.txt" 2>&1 || true
log "the pod's scan: $(grep '^summary:' "$work/scan-pod.txt" || tail -n1 "$work/scan-pod.txt")"

# A container started before the pod: the pod's namespace gets a replica of its mounts, which
# must go when dockerd unmounts them.
containers+=(nsdetach-ds-probe)
"$docker_cli" run -d --network none --name nsdetach-ds-probe "$probe_image" /bin/sleep 100000 >/dev/null || die "docker run of the probe failed"
probe_layer=$("$docker_cli" inspect -f '{{.GraphDriver.Data.MergedDir}}' nsdetach-ds-probe)
probe_layer=${probe_layer%/merged}

# 3. The pod.
containers+=(nsdetach-ds)
pod_pid=$(run_pod nsdetach-ds)
started=$SECONDS
health=$(wait_http nsdetach-ds "$pod_pid") || die "the pod never answered on $healthz (log above)"
first_pass_s=$((SECONDS - started))
[[ $(head -n1 <<<"$health") == 200 ]] || fail "healthz: the pod answers $health"
metrics=$(http_get "$pod_pid" /metrics | tail -n +2)
printf '%s\n' "$metrics" >"$work/metrics.txt"
metric() { awk -v m="$1" '$1 == m { print $2; found = 1 } END { if (!found) print "absent" }' "$work/metrics.txt"; }
# metric_sum NAME: the sum of NAME's series over all their labels.
metric_sum() { awk -v m="$1" '$1 == m || index($1, m "{") == 1 { sum += $2; found = 1 } END { print found ? sum : "absent" }' "$work/metrics.txt"; }
stale_after=$(metric 'nsdetach_leaked_mounts{state="stale"}')
pinned_after=$(metric 'nsdetach_leaked_mounts{state="pinned"}')
detached=$(metric 'nsdetach_detach_total{result="detached"}')
gone=$(metric 'nsdetach_detach_total{result="gone"}')
detach_failed=$(metric 'nsdetach_detach_total{result="failed"}')
refused=$(metric 'nsdetach_detach_total{result="refused"}')
scan_errors=$(metric_sum nsdetach_scan_errors_total)
namespaces=$(metric nsdetach_namespaces_scanned)
log "pod metrics after its first pass (${first_pass_s}s): stale=$stale_after pinned=$pinned_after detached=$detached gone=$gone failed=$detach_failed refused=$refused scan_errors=$scan_errors namespaces=$namespaces"
if [[ $pinned_after != "$pinned_before" || $((detached + gone)) != "$stale_before" ]]; then
	log "the host's scan:"; cat "$work/scan-before.txt" >&2
	log "the pod's scan:"; cat "$work/scan-pod.txt" >&2
fi
[[ $pinned_after == "$pinned_before" ]] || fail "pinned: the pod reports $pinned_after pinned leaks, the host scan $pinned_before"
[[ $detached != absent && $gone != absent && $((detached + gone)) == "$stale_before" && $stale_after == 0 ]] ||
	fail "detached: the pod detached $detached (+$gone gone) and reports $stale_after stale, the host scan found $stale_before stale"
[[ $detach_failed == 0 && $refused == 0 && $scan_errors == 0 ]] || fail "errors: failed=$detach_failed refused=$refused scan_errors=$scan_errors"
{ [[ $namespaces =~ ^[0-9]+$ ]] && ((namespaces > 2)); } || fail "namespaces: the pod scanned $namespaces mount namespaces: it does not see the node's"

# Independently of nsdetach: each stale mount is gone from its namespace, each pinned one stays.
stale_left=0 pinned_kept=0
while read -r verdict pid mp; do
	if awk -v mp="$mp" '$5 == mp { found = 1 } END { exit !found }' "/proc/$pid/mountinfo" 2>/dev/null; then
		if [[ $verdict == stale ]]; then stale_left=$((stale_left + 1)); else pinned_kept=$((pinned_kept + 1)); fi
	fi
done <"$work/leaks-before.txt"
((stale_left == 0)) || fail "stale_left: $stale_left stale mounts are still in their namespaces"
((pinned_kept == pinned_before)) || fail "pinned_kept: $pinned_kept of $pinned_before pinned mounts are still in their namespaces"
survivors_running=0
for id in "${survivors[@]}"; do
	if [[ $("$docker_cli" inspect -f '{{.State.Running}}' "$id" 2>/dev/null) == true ]]; then survivors_running=$((survivors_running + 1)); fi
done
((survivors_running == ${#survivors[@]})) || fail "survivors: $survivors_running of ${#survivors[@]} survivors run"

# The pod's namespace holds nothing of its own: every mount under the data root in it is a
# replica (same place, same device) of one in dockerd's namespace.
# Its own root directory is the exception: the recursive bind of the data root copies the pod's
# rootfs with what runc mounted on it (/proc, /dev, ...), which pins nothing but the pod's own layer.
own_root=$("$docker_cli" inspect -f '{{.GraphDriver.Data.MergedDir}}' nsdetach-ds)
comm -23 <(mounts_of "$pod_pid") <(mounts_of "$dockerd_pid") | awk -v r="$own_root" 'index($1 "/", r "/") != 1' >"$work/own-mounts.txt"
own=$(wc -l <"$work/own-mounts.txt")
((own == 0)) || { fail "own_mounts: the pod's namespace holds $own mounts under $data that dockerd's does not:"; cat "$work/own-mounts.txt" >&2; }
"$docker_cli" logs nsdetach-ds >"$work/pod-log.txt" 2>&1 || true
probe_removed=1
err=$(timeout 120 "$docker_cli" rm -f nsdetach-ds-probe 2>&1 >/dev/null) || { probe_removed=0; fail "probe: docker rm -f of a container started before the pod failed: $err"; }
probe_held=$(awk -v p="$probe_layer" 'index($5 "/", p "/") == 1 || index($5 "/", p "-init/") == 1' "/proc/$pod_pid/mountinfo" | wc -l)
((probe_held == 0)) || fail "probe_held: the pod's namespace still holds $probe_held mounts of the removed probe"
[[ $("$docker_cli" inspect -f '{{.State.Running}}' nsdetach-ds) == true ]] || fail "running: the pod exited: $("$docker_cli" logs nsdetach-ds 2>&1 | tail -n 3)"

# 4. Bad input: the same pod without host pid, and without one capability.
bad_input() {
	local name=$1 drop=$2 says=$3 pid out logs
	containers+=("$name")
	pid=$(run_pod "$name" "$drop")
	out=$(wait_http "$name" "$pid") || { fail "$name: it never answered on $healthz"; return; }
	logs=$("$docker_cli" logs "$name" 2>&1)
	if [[ $(head -n1 <<<"$out") == 503 && $out == *"$says"* && $logs == *"not ready"*"$says"* ]]; then
		log "$name: 503 on $healthz, log: $(grep -m1 'not ready' <<<"$logs" | cut -c1-160)..."
	else
		fail "$name: /healthz answered '$(head -c 200 <<<"$out")', log '$(head -c 300 <<<"$logs")'; want 503 and the reason ($says)"
	fi
}
bad_input nsdetach-ds-no-hostpid --pid=host "hostPID: true"
bad_input nsdetach-ds-no-ptrace --cap-add=SYS_PTRACE "CAP_SYS_PTRACE is missing"

ok=1
((${#failures[@]} == 0)) || ok=0
printf 'DAEMONSET image=%s stale_before=%s pinned_before=%s detached=%s gone=%s stale_after=%s pinned_after=%s stale_left=%s pinned_kept=%s survivors_running=%s own_mounts=%s probe_removed=%s probe_held=%s first_pass_s=%s failures=%s ok=%s\n' \
	"$image" "$stale_before" "$pinned_before" "$detached" "$gone" "$stale_after" "$pinned_after" "$stale_left" \
	"$pinned_kept" "$survivors_running" "$own" "$probe_removed" "$probe_held" "$first_pass_s" "$(IFS=,; echo "${failures[*]:-none}")" "$ok"
((ok)) || exit 1
