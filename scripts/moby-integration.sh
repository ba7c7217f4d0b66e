#!/usr/bin/env bash
# moby-integration.sh VERSION [--storage overlay2|snapshotter] [--runc PATH] [--run REGEX]
#
# moby's own integration tests for the paths the patch series touches (container removal, restart,
# ipc modes, live-restore) against the stock and the patched dockerd of VERSION: the judge of
# regressions is moby's test suite, not ours. The tests are compiled once from the pristine moby
# tree that `make dockerd-stock` prepared (.build/moby-VERSION); for each build a private dockerd
# (data root, exec root and socket under a temporary directory) is the suite's main daemon, and the
# daemons that tests start themselves (live-restore, daemon restarts) are the same binary, found as
# `dockerd` first in PATH. Every daemon runs containerd in-process (--feature embedded-containerd,
# as moby's CI with TEST_INTEGRATION_CONTAINERD_EMBEDDED): the test daemons' default, a containerd at
# /var/run/docker/containerd, is a shared host path. That containerd is the one moby pins
# (containerd/v2), and so is the runc shim, built from moby's go.mod: Debian's 1.6 shim fails
# every container start of a containerd 2 ("start failed: io.containerd.runc.v2: type with url
# <container id>: not found"). Each build's run has a network namespace of its own (the suite's
# dockerd, the tests and their daemons): their docker0 bridges and iptables rules meet no other
# dockerd of this machine, and leave the host's alone. No registry is reachable:
# every "frozen image" the suite's TestMain wants (the list in moby's testutil/environment/
# protect.go) is imported from Debian's busybox-static before the suite starts, so that moby's
# loader finds them all and neither pulls nor reads moby's Dockerfile (the module zip lacks it).
#
# It writes .build/moby-integration-VERSION[-STORAGE]/results.txt and prints it: one line per test
# and build ("TEST name stock=PASS patched=PASS"), the first failure message of every test that
# failed or was skipped with either build, and the counts per build. Exit status 1 when a test
# passes with the stock build and not with the patched one, or a run breaks.
set -euo pipefail

die() {
	printf 'moby-integration: %s\n' "$*" >&2
	exit 1
}
log() { printf 'moby-integration: %s\n' "$*" >&2; }

[[ $# -ge 1 ]] || die "usage: $0 VERSION [--storage overlay2|snapshotter] [--runc PATH] [--run REGEX]"
version=$1
shift
storage=
runc=
# The tests of the paths the series touches (integration/container and integration/daemon).
container_tests='^(TestRemove|TestDaemonRestartKillContainers|TestContainerRestart|TestContainerWithAutoRemoveCanBeRestarted|TestIpcMode|TestAPIIpcMode|TestDaemonIpcMode|TestContainerStartOnDaemonRestart|TestDaemonRestartIpcMode|TestRestartDaemonWithRestartingContainer|TestHardRestartWhenContainerIsRunning)'
daemon_tests='^TestLiveRestore$'
# Image removal (integration/image): removal of images with and without containers, by digest.
image_tests='^(TestRemoveImageOrphaning|TestRemoveByDigest|TestRemoveWithPlatform|TestAPIImagesDelete)$'
suites=(container daemon image)
while (($#)); do
	case $1 in
	--storage) storage=${2:?}; shift 2 ;;
	--runc) runc=${2:?}; shift 2 ;;
	--run) container_tests=${2:?} daemon_tests=${2:?} image_tests=${2:?}; shift 2 ;;
	*) die "unknown argument $1" ;;
	esac
done
case $storage in '' | overlay2 | snapshotter) ;; *) die "--storage overlay2 or snapshotter" ;; esac
[[ $(id -u) -eq 0 ]] || die "refusing to run as $(id -un): moby's integration tests start dockerd and containers; run as root"

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
src=$repo/.build/moby-$version
stock=$repo/bin/dockerd-stock-$version
patched=$repo/bin/dockerd-$version
for b in "$stock" "$patched"; do
	[[ -x $b ]] || die "$b missing; run make dockerd-stock dockerd VERSION=$version"
done
git -C "$src" rev-parse -q --verify refs/tags/pristine >/dev/null || die "$src is not a pristine moby tree; run make dockerd-stock VERSION=$version"
[[ -z $runc ]] || [[ -x $runc ]] || die "no runc at $runc"
# Absolute: a relative PATH entry makes exec.LookPath (buildkit's runc lookup) fail with ErrDot.
[[ -z $runc ]] || runc=$(cd "$(dirname "$runc")" && pwd)/$(basename "$runc")
command -v containerd >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y containerd >&2
file -L /bin/busybox 2>/dev/null | grep -q 'statically linked' || DEBIAN_FRONTEND=noninteractive apt-get install -y busybox-static >&2
command -v docker >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y docker.io >&2
command -v ip >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y iproute2 >&2

out=$repo/.build/moby-integration-$version${storage:+-$storage}
mkdir -p "$out"
# Unlink, never truncate, the previous run's outputs: .build may be a hard-linked copy of another
# checkout's.
rm -f "$out"/*.log "$out"/*.results "$out"/table.txt "$out"/results.txt
# The suites and docker-proxy (dockerd refuses to start without one unless told not to use it,
# and some tests start daemons with the default), from the pristine tree: the tests are the same
# for both builds.
# The moby tree lives below this repository's go.work, which must not apply to it.
export GOTOOLCHAIN=local GOFLAGS=-mod=readonly GOWORK=off
(
	cd "$src"
	for s in "${suites[@]}"; do
		[[ -x $out/$s.test ]] || CGO_ENABLED=1 go test -c -o "$out/$s.test" "./integration/$s"
	done
	[[ -x $out/bin/docker-proxy ]] || CGO_ENABLED=0 go build -o "$out/bin/docker-proxy" ./cmd/docker-proxy
	[[ -x $out/bin/containerd-shim-runc-v2 ]] ||
		CGO_ENABLED=0 go build -o "$out/bin/containerd-shim-runc-v2" github.com/containerd/containerd/v2/cmd/containerd-shim-runc-v2
) >&2 || die "compiling moby's integration tests failed (above)"

# A busybox rootfs, imported as the images the suite expects to be there ("frozen images").
rootfs=$out/rootfs
rm -rf "$rootfs"
mkdir -p "$rootfs/bin" "$rootfs/etc" "$rootfs/tmp"
cp /bin/busybox "$rootfs/bin/busybox"
for a in $(/bin/busybox --list); do
	[[ $a == busybox ]] || ln -sf busybox "$rootfs/bin/$a"
done
printf '#!/bin/sh\necho "Hello from Docker!"\n' >"$rootfs/hello"
chmod +x "$rootfs/hello"
printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' >"$rootfs/etc/passwd"
printf 'root:x:0:\nnogroup:x:65534:\n' >"$rootfs/etc/group"
# The frozen image names of this moby version: the string literals of `var frozenImages`.
protect=
for f in "$src/internal/testutil/environment/protect.go" "$src/testutil/environment/protect.go"; do
	[[ -f $f ]] && protect=$f && break
done
[[ -n $protect ]] || die "no testutil/environment/protect.go in $src: where does this moby version list its frozen images?"
mapfile -t frozen < <(awk '/^var frozenImages = /{ on = 1; next } on && /^}/ { exit } on' "$protect" | grep -o '"[^"]*"' | tr -d '"')
((${#frozen[@]})) || die "no frozen images found in $protect"
log "frozen images (from ${protect#"$src"/}): ${frozen[*]}"

# The oldest API version the daemons accept, as moby's hack/make/.integration-daemon-start sets it:
# TestIpcModeOlderClient talks API 1.39, below Engine 29's default minimum.
min_api=1.24

# The run in progress: its temporary directory, its network namespace's holder, its dockerd and its
# test binary (PIDs), for stop_run, also on INT and TERM.
tmp='' netns_pid='' dockerd_pid='' test_pid=''

# stop_run stops the run in progress: the suite, its dockerd, and whatever else it started and left
# behind (a shim or a test's own daemon, whose command line names the temporary directory), each by
# PID; then it unmounts what is left under the temporary directory and removes it.
stop_run() {
	[[ -n $tmp ]] || return 0
	[[ -z $test_pid ]] || kill -KILL "$test_pid" 2>/dev/null || true
	if [[ -n $dockerd_pid ]]; then
		kill -TERM "$dockerd_pid" 2>/dev/null || true
		wait "$dockerd_pid" 2>/dev/null || true
	fi
	local left=() c args
	for c in /proc/[0-9]*/cmdline; do
		mapfile -d '' args 2>/dev/null <"$c" || continue
		[[ "${args[*]}" != *"$tmp/"* ]] || { c=${c#/proc/}; left+=("${c%/cmdline}"); }
	done
	if ((${#left[@]})); then
		log "killing leftover processes: $(for p in "${left[@]}"; do printf '%s(%s) ' "$p" "$(cat "/proc/$p/comm" 2>/dev/null)"; done)"
		kill -KILL "${left[@]}" 2>/dev/null || true
	fi
	[[ -z $netns_pid ]] || { kill -KILL "$netns_pid" 2>/dev/null || true; wait "$netns_pid" 2>/dev/null || true; }
	awk -v root="$tmp/" 'index($5 "/", root) == 1 { print $5 }' /proc/self/mountinfo | sort -r | xargs -r -n1 umount -l
	rm -rf --one-file-system "$tmp"
	tmp='' netns_pid='' dockerd_pid='' test_pid=''
}

trap 'stop_run; exit 130' INT TERM

# run_suites NAME DOCKERD: the suites against DOCKERD; "--- PASS/FAIL/SKIP: Test" lines go to
# $out/NAME.results.
run_suites() {
	local name=$1 dockerd=$2 rc=0
	tmp=$(mktemp -d "${TMPDIR:-/tmp}/moby-it.XXXXXX")
	mkdir -p "$tmp/bin" "$tmp/dest"
	ln -s "$dockerd" "$tmp/bin/dockerd"
	ln -s "$out/bin/docker-proxy" "$tmp/bin/docker-proxy"
	ln -s "$out/bin/containerd-shim-runc-v2" "$tmp/bin/containerd-shim-runc-v2"
	local path=$tmp/bin:${runc:+$(dirname "$runc"):}$PATH
	# overlay2: TEST_INTEGRATION_USE_GRAPHDRIVER as moby's harness sets it, for the daemons (an
	# explicit graphdriver) and for the tests (testEnv.UsingSnapshotter() reads it: without it
	# TestRemoveByDigest and TestRemoveWithPlatform, snapshotter-only, ran and failed).
	local sflags=() graphdriver='' use_graphdriver=''
	[[ $storage != overlay2 ]] || sflags=(--storage-driver=overlay2) graphdriver=overlay2 use_graphdriver=1
	unshare --net -- sleep infinity &
	netns_pid=$!
	local ours
	ours=$(readlink /proc/self/ns/net)
	for _ in $(seq 100); do
		[[ $(readlink "/proc/$netns_pid/ns/net" 2>/dev/null) == "$ours" ]] || break
		sleep 0.05
	done
	[[ $(readlink "/proc/$netns_pid/ns/net" 2>/dev/null) != "$ours" ]] || die "no network namespace for the run"
	nsenter --net="/proc/$netns_pid/ns/net" -- ip link set lo up
	# nsenter execs dockerd: $! is dockerd's PID.
	PATH=$path DOCKER_MIN_API_VERSION=$min_api TEST_INTEGRATION_USE_GRAPHDRIVER=$use_graphdriver nsenter --net="/proc/$netns_pid/ns/net" -- "$dockerd" --data-root "$tmp/data" --exec-root "$tmp/exec" -H "unix://$tmp/docker.sock" \
		--pidfile "$tmp/docker.pid" --userland-proxy=false --iptables=false --ip6tables=false --feature embedded-containerd "${sflags[@]}" \
		>"$out/$name.dockerd.log" 2>&1 &
	dockerd_pid=$!
	for _ in $(seq 300); do
		DOCKER_HOST=unix://$tmp/docker.sock timeout 5 docker version >/dev/null 2>&1 && break
		kill -0 "$dockerd_pid" 2>/dev/null || break
		sleep 0.2
	done
	if DOCKER_HOST=unix://$tmp/docker.sock timeout 5 docker version >/dev/null 2>&1; then
		# One image per frozen name, each with its name in /etc/frozen-image: tags of a single image
		# would make the removal of one (TestLiveRestore/volume_references/image_mount expects it
		# to fail while a container mounts it) a mere untag.
		for img in "${frozen[@]}"; do
			printf '%s\n' "$img" >"$rootfs/etc/frozen-image"
			tar -C "$rootfs" -c . | DOCKER_HOST=unix://$tmp/docker.sock docker import -c 'CMD ["/hello"]' - "$img" >/dev/null
		done
		log "$name: $(DOCKER_HOST=unix://$tmp/docker.sock docker info --format '{{.ServerVersion}}, storage {{.Driver}}')"
		for s in "${suites[@]}"; do
			local run
			case $s in container) run=$container_tests ;; daemon) run=$daemon_tests ;; image) run=$image_tests ;; esac
			(
				cd "$src/integration/$s"
				# TMPDIR: the tests' daemons put their exec roots in $TMPDIR/dxr.
				PATH=$path TMPDIR=$tmp DOCKER_MIN_API_VERSION=$min_api DOCKER_HOST=unix://$tmp/docker.sock DEST=$tmp/dest DOCKER_USERLANDPROXY=false \
					TEST_INTEGRATION_CONTAINERD_EMBEDDED=1 DOCKER_GRAPHDRIVER=$graphdriver TEST_INTEGRATION_USE_GRAPHDRIVER=$use_graphdriver \
					exec nsenter --net="/proc/$netns_pid/ns/net" -- "$out/$s.test" -test.v -test.timeout 30m -test.run "$run"
			) >"$out/$name.$s.log" 2>&1 &
			test_pid=$!
			wait "$test_pid" || rc=$?
			test_pid=
		done
	else
		log "$name: dockerd did not start; $out/$name.dockerd.log:"
		tail -n 20 "$out/$name.dockerd.log" >&2
		rc=3
	fi
	stop_run
	grep -hE '^\s*--- (PASS|FAIL|SKIP): ' "$out/$name".*.log 2>/dev/null |
		sed -E 's/^\s*--- (PASS|FAIL|SKIP): ([^ ]+).*/\2 \1/' >"$out/$name.results" || true
	# The first message a test printed (go test -v: "    file_test.go:N: ..." after its "=== RUN" or
	# "=== CONT" line), the reason of a failure or a skip.
	awk '/^=== (RUN|CONT|PAUSE|NAME) / { t = $3; next }
		t != "" && /^ +[A-Za-z0-9_]+\.go:[0-9]+: / && !(t in m) { sub(/^ +/, ""); m[t] = $0 }
		END { for (t in m) print t "\t" m[t] }' "$out/$name".*.log 2>/dev/null | sort >"$out/$name.messages" || true
	return "$rc"
}

status=0
run_suites stock "$stock" || log "stock: a suite exited non-zero (logs in $out)"
run_suites patched "$patched" || log "patched: a suite exited non-zero (logs in $out)"
[[ -s $out/stock.results && -s $out/patched.results ]] || die "no test results; logs in $out"
join -a1 -a2 -e MISSING -o 0,1.2,2.2 <(sort "$out/stock.results") <(sort "$out/patched.results") >"$out/table.txt"
regressions=$(awk '$2 == "PASS" && $3 != "PASS"' "$out/table.txt" | wc -l)
read -r sp sf ss <<<"$(awk '{ c[$2]++ } END { print c["PASS"] + 0, c["FAIL"] + 0, c["SKIP"] + 0 }' "$out/table.txt")"
read -r pp pf ps <<<"$(awk '{ c[$3]++ } END { print c["PASS"] + 0, c["FAIL"] + 0, c["SKIP"] + 0 }' "$out/table.txt")"
{
	echo "moby-integration $version, storage ${storage:-default}: stock $($stock --version), patched $($patched --version)"
	awk '{ printf "TEST %s stock=%s patched=%s\n", $1, $2, $3 }' "$out/table.txt"
	# Why each test that did not pass with a build failed or was skipped, in its own words.
	for b in stock patched; do
		col=2
		[[ $b == stock ]] || col=3
		awk -v c="$col" '$c != "PASS" { print $1 }' "$out/table.txt" | while read -r t; do
			m=$(awk -F '\t' -v t="$t" '$1 == t { print $2; exit }' "$out/$b.messages")
			echo "WHY $b $t: ${m:-(no message; see $out/$b.*.log)}"
		done
	done
	echo "moby-integration $version ${storage:-default storage}: stock $sp passed, $sf failed, $ss skipped; patched $pp passed, $pf failed, $ps skipped; $regressions pass with stock and not with patched"
} >"$out/results.txt"
cat "$out/results.txt"
((regressions == 0)) || status=1
exit "$status"
