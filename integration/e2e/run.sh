#!/usr/bin/env bash
# run.sh — play the incident of docs/incident.md against a real dockerd and measure the outcome.
#
# usage: run.sh --dockerd PATH [--emulator OLDKERNEL] [--rejoin NSDETACH] [--containers N] [--survivors K]
#               [--method alternate|rm-f|stop+rm] [--expect incident|removed|clean]
#               [--storage overlay2|snapshotter] [--runc PATH] [--logs DIR] [--docker PATH]
#               [--daemonset NSDETACH_STATIC]
#
# dockerd is started like systemd's MountFlags=slave does it (a new slave mount namespace on every
# start) with --live-restore, N+K containers run `sleep` (every other one with --ipc shareable, so
# that dockerd mounts its /dev/shm), dockerd is stopped with SIGTERM and started
# again (new namespace, the shims stay in the old one), and N containers are then removed: with
# --method alternate (the default) odd ones with `docker rm -f`, even ones with `docker stop` +
# `docker rm`. After each removal every mount namespace is scanned for mounts of that container
# (its layer, init layer and container directories, by mount point or overlay upperdir). The K
# survivors must keep running; dockerd is then restarted a second time, the survivors must still
# run, and they are removed too. The last line on stdout is one line of key=value pairs:
#
#   RESULT dockerd= emulator= containers= survivors=
#     old_ns_procs=     processes left in dockerd #1's namespace after it stopped (the shims)
#     held_mounts=      mounts under the data root in that namespace then
#     foreign_mounts=   the same once dockerd #2 has started and restored its containers
#     removed= failed=  removals that succeeded / failed; busy_errors= of them "resource busy"
#     foreign_after_rm= mounts of a removed container found in any namespace right after its removal
#     ps_left= stuck=   removed containers still in `docker ps -a`; of them "Removal In Progress"/"Dead"
#     leaked_mounts=    mounts under the data root in any namespace afterwards, survivors' own excepted
#     survivors_running=  survivors running after the removals
#     exec_ok=          1 when `docker exec` into every restored survivor worked (dockerd #2)
#     restart2_running=   survivors running after the second restart (dockerd #3)
#     final_failed= final_ps= final_leaked=  removing the survivors under dockerd #3: failures,
#                       containers left in `docker ps -a`, mounts under the data root left anywhere
#     unmount_log_errors=  "Failed to unmount" lines in dockerd #2's debug log
#     kernel_inuse=     new "overlayfs: upperdir is in-use" kernel messages (machine-wide count)
#     restore_inuse=    the same, only while dockerd #2 started and restored its containers
#     rm_ms_total= rm_ms_max=  latency of the rm commands (stop excluded); duration_s= the whole run
#     storage=          overlay2 or snapshotter (what `docker info` reported)
#     dirs_left=        removed containers whose layer directory (overlay2) or rootfs mount point
#                       (snapshotter: DATA/rootfs/overlayfs/ID) still exists after the removals
#     final_dirs_left=  the same for every container of the run at the end
#
# --storage overlay2 (the default) starts dockerd with --storage-driver=overlay2 (the graphdriver);
# --storage snapshotter starts it without, on a fresh data root, so that Engine 29 and later use the
# containerd image store (snapshotter overlayfs; each container's rootfs is mounted at
# DATA/rootfs/overlayfs/ID); the run fails if `docker info` says otherwise.
# --runc puts the directory of PATH (a runc binary, see scripts/build-runc.sh) first in dockerd's
# PATH: Engine 29 needs a runc that knows the time namespace.
#
# A REMOVAL line per removed container comes before it.
#
# --emulator runs dockerd as `OLDKERNEL -- unshare ... dockerd ...`, under the old-kernel emulator of
# docs/oldkernel.md, which makes rmdir of a mount point held by another namespace fail with EBUSY. The
# emulator stays in this script's namespace, so that only the shims pin the old one, as in the
# incident; it keeps answering for the shims after dockerd exits.
# --rejoin starts every dockerd as `NSDETACH rejoin --root DATA -- dockerd ...` inside the same
# new slave namespace (as the systemd drop-in deploy/systemd/docker.service.d/20-nsdetach-rejoin.conf
# does): dockerd #2 should join dockerd #1's namespace, which the shims keep alive. It adds a fourth
# start once every container, survivors included, is removed (no shim left: a fresh namespace is
# expected) and the keys
#     rejoined=         1 when dockerd #2 runs in the namespace of every shim of dockerd #1
#     fresh_ns=         1 when dockerd #4 (zero live containers) got a namespace of its own
# (foreign_mounts= counts only namespaces other than dockerd #2's, so 0 once it rejoined), and
# --expect clean then asserts rejoined=1 restore_inuse=0 exec_ok=1 fresh_ns=1 as well.
# --daemonset runs integration/e2e/daemonset.sh after the removals: the DaemonSet's image, built from
# NSDETACH_STATIC by this dockerd and run as the pod spec says, must report and detach the stale leaks
# and leave the rest alone (--want-stale with --expect incident); adds the key daemonset= (1 ok).
# --expect makes the exit status an assertion: incident = a removal failed with "device or resource
# busy" and its container is left "Removal In Progress" or "Dead"; removed = every removal succeeded
# and `docker ps -a` ends empty; clean = removed, and no namespace held a mount of a removed container
# after its removal or afterwards, the survivors kept running through both restarts and took a
# `docker exec` after the first, and nothing is
# mounted under the data root in any namespace at the end.
# Exit status: 0 ok, 1 outcome differs from --expect, 2 usage, 3 the harness itself failed.
#
# Everything it starts is private (data root, exec root, socket, containerd) under one temporary
# directory, and everything it started is killed by pid, unmounted and removed on exit.
set -euo pipefail

usage() {
	sed -n '4,6p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2
	exit 2
}
die() {
	printf 'e2e: %s\n' "$*" >&2
	exit 3
}
log() { printf 'e2e: %s\n' "$*" >&2; }
now_ms() { echo $(($(date +%s%N) / 1000000)); }

args=("$@")
dockerd=
emulator=
rejoin=
containers=4
survivors=2
method=alternate
expect=
logs=
docker_cli=docker
daemonset=
storage=overlay2
runc=
while (($#)); do
	case $1 in
	--dockerd) dockerd=${2:?}; shift 2 ;;
	--emulator) emulator=${2:?}; shift 2 ;;
	--rejoin) rejoin=${2:?}; shift 2 ;;
	--containers) containers=${2:?}; shift 2 ;;
	--survivors) survivors=${2:?}; shift 2 ;;
	--method) method=${2:?}; shift 2 ;;
	--expect) expect=${2:?}; shift 2 ;;
	--logs) logs=${2:?}; shift 2 ;;
	--docker) docker_cli=${2:?}; shift 2 ;;
	--daemonset) daemonset=${2:?}; shift 2 ;;
	--storage) storage=${2:?}; shift 2 ;;
	--runc) runc=${2:?}; shift 2 ;;
	-h | --help) usage ;;
	*) printf 'e2e: unknown argument %s\n' "$1" >&2; usage ;;
	esac
done
[[ -n $dockerd ]] || usage
[[ $(id -u) -eq 0 ]] || die "refusing to run as $(id -un): run.sh must run as root, since it starts dockerd and creates mount namespaces, overlay mounts and containers (sudo $0 ${args[*]})"
[[ $containers =~ ^[1-9][0-9]*$ ]] || { log "--containers wants a positive number"; usage; }
[[ $survivors =~ ^[0-9]+$ ]] || { log "--survivors wants a number"; usage; }
case $method in alternate | rm-f | stop+rm) ;; *) log "--method alternate, rm-f or stop+rm"; usage ;; esac
case $expect in '' | incident | removed | clean) ;; *) log "--expect incident, removed or clean"; usage ;; esac
case $storage in overlay2 | snapshotter) ;; *) log "--storage overlay2 or snapshotter"; usage ;; esac
storage_flags=()
[[ $storage == snapshotter ]] || storage_flags=(--storage-driver=overlay2)
if [[ -n $runc ]]; then
	[[ -f $runc && -x $runc && $(basename "$runc") == runc ]] || die "no executable named runc at $runc"
	PATH=$(dirname "$(realpath "$runc")"):$PATH
	export PATH
fi
[[ -f $dockerd && -x $dockerd ]] || die "no executable dockerd at $dockerd"
dockerd=$(realpath "$dockerd")
if [[ -n $emulator ]]; then
	[[ -f $emulator && -x $emulator ]] || die "no executable emulator at $emulator"
	emulator=$(realpath "$emulator")
fi
if [[ -n $rejoin ]]; then
	[[ -f $rejoin && -x $rejoin ]] || die "no executable nsdetach at $rejoin"
	rejoin=$(realpath "$rejoin")
fi

# The daemon needs containerd, its runc shim and runc; the image needs a static busybox. A fresh CI
# machine has none of them.
missing=()
command -v "$docker_cli" >/dev/null || missing+=(docker.io)
command -v containerd >/dev/null || missing+=(containerd)
command -v containerd-shim-runc-v2 >/dev/null || missing+=(containerd)
command -v runc >/dev/null || missing+=(runc)
file -L /bin/busybox 2>/dev/null | grep -q 'statically linked' || missing+=(busybox-static)
if ((${#missing[@]})); then
	log "installing ${missing[*]}"
	DEBIAN_FRONTEND=noninteractive apt-get install -y "${missing[@]}" >&2 || die "apt-get install ${missing[*]} failed"
fi

start=$SECONDS
tmp=$(mktemp -d "${TMPDIR:-/tmp}/nsdetach-e2e.XXXXXX")
data=$tmp/data
exec_root=$tmp/exec
sock=$tmp/docker.sock
pidfile=$tmp/dockerd.pid
export DOCKER_HOST=unix://$sock DOCKER_CONFIG=$tmp/cli
self_ns=$(readlink /proc/self/ns/mnt)

# Containers of this run, by id: their processes live in their own namespaces and are found by
# cgroup. Every other process of this run (dockerd, containerd, shims, runc, the emulator) names
# $tmp on its command line; namespace inodes and pids are reused, so neither identifies them later.
ids=()
# Mount namespace of each daemon, for the report.
namespaces=()
# Paths outside $tmp that dockerd, containerd and the shims create whatever their flags say
# (key.json is 20.10's, /run/containerd/s holds the shim sockets); the ones that do not exist yet
# are this run's to remove, deepest first.
created=()
for p in /etc/docker/key.json /etc/docker /run/docker/plugins /run/docker /run/containerd/s /run/containerd; do
	[[ -e $p ]] || created+=("$p")
done

# ours PID: whether PID is a process of this run other than the script itself.
ours() {
	local cmd cg id
	{ cmd=$(tr '\0' ' ' <"/proc/$1/cmdline"); } 2>/dev/null || return 1
	[[ $cmd == *"$tmp/"* ]] && return 0
	{ cg=$(<"/proc/$1/cgroup"); } 2>/dev/null || return 1
	for id in "${ids[@]}"; do
		[[ $cg == *"$id"* ]] && return 0
	done
	return 1
}

# procs_of_run prints the pids of the processes of this run that are alive.
procs_of_run() {
	local p
	for p in /proc/[0-9]*; do
		p=${p#/proc/}
		[[ $p != "$$" && $p != "$BASHPID" ]] && ours "$p" && echo "$p"
	done
	return 0
}

# procs_in_ns NS prints how many processes live in mount namespace NS.
procs_in_ns() {
	local p n=0
	for p in /proc/[0-9]*; do
		[[ $(readlink "$p/ns/mnt" 2>/dev/null) == "$1" ]] && n=$((n + 1))
	done
	echo "$n"
}

# scan_mounts and owned_by: what is mounted below the data root in every namespace.
# shellcheck source=integration/e2e/mounts.sh
. "$(dirname "${BASH_SOURCE[0]}")/mounts.sh"

# prefixes_of ID prints the directories whose mounts belong to container ID: its layer and init
# layer (overlay2) or its rootfs mount point and snapshot (snapshotter), and its container
# directory (recorded in $tmp/dirs.tsv when it was started; the first is the one dirs_left counts).
prefixes_of() {
	awk -F '\t' -v id="$1" '$1 == id { print $2 }' "$tmp/dirs.tsv"
}

# dirs_left ID... prints how many of the containers ID still have their layer directory or rootfs
# mount point.
dirs_left() {
	local id p n=0
	for id in "$@"; do
		read -ra p <<<"$(prefixes_of "$id")"
		[[ ! -e ${p[0]} ]] || n=$((n + 1))
	done
	echo "$n"
}

cleanup() {
	local rc=$? p i pids=()
	set +e
	# A second ^C must not cut the cleanup short.
	trap '' INT TERM
	trap - EXIT
	if [[ -n $logs ]]; then
		mkdir -p "$logs" && cp "$tmp"/*.log "$tmp"/*.txt "$tmp"/*.tsv "$logs"/ 2>/dev/null
		[[ ! -d $tmp/daemonset ]] || { mkdir -p "$logs/daemonset" && cp "$tmp"/daemonset/*.txt "$logs/daemonset"/ 2>/dev/null; }
	fi
	# With live-restore a stopped daemon leaves its containers running: remove them while it is up.
	# Every container of this private daemon is this run's, also one whose `docker run` was cut short.
	if [[ -S $sock ]] && timeout 10 "$docker_cli" version >/dev/null 2>&1; then
		mapfile -t -O "${#ids[@]}" ids < <(timeout 10 "$docker_cli" ps -aq --no-trunc)
		# Dead and "Removal In Progress" ones are skipped: a build that fails to remove them takes
		# seconds per try, and what is left of them goes with the kill and the rm -rf below.
		for i in $(timeout 10 "$docker_cli" ps -q --no-trunc --filter status=running --filter status=exited --filter status=created --filter status=paused); do
			timeout 30 "$docker_cli" rm -f "$i" >/dev/null 2>&1
		done
	fi
	# A daemon that is up gets to stop cleanly first; the pidfile names only the latest one.
	p=$(cat "$pidfile" 2>/dev/null)
	if [[ -n $p ]] && ours "$p"; then
		kill -TERM "$p"
		for i in $(seq 100); do
			[[ -d /proc/$p ]] || break
			sleep 0.2
		done
	fi
	for i in $(seq 50); do
		mapfile -t pids < <(procs_of_run)
		((${#pids[@]})) || break
		kill -KILL "${pids[@]}" 2>/dev/null
		sleep 0.2
	done
	((${#pids[@]} == 0)) || log "cleanup: could not kill pids ${pids[*]}"
	for i in "${ids[@]}"; do
		rmdir /sys/fs/cgroup/*/docker/"$i" 2>/dev/null
		# A killed shim leaves its socket, named like containerd's shim.SocketAddress does.
		rm -f "/run/containerd/s/$(printf '%s' "$exec_root/containerd/containerd.sock/moby/$i" | sha256sum | cut -d' ' -f1)"
	done
	for p in "${created[@]}"; do
		if [[ -d $p ]]; then rmdir "$p" 2>/dev/null; else rm -f "$p"; fi
	done
	# Only this namespace can be left holding mounts now; deepest first.
	awk -v root="$tmp/" 'index($5 "/", root) == 1 { print $5 }' /proc/self/mountinfo | sort -r |
		while read -r p; do umount -l "$p" || log "cleanup: umount $p failed"; done
	rm -rf --one-file-system "$tmp" || log "cleanup: could not remove $tmp"
	exit "$rc"
}
trap cleanup EXIT
trap 'log "failed at line $LINENO: $BASH_COMMAND"' ERR
trap 'exit 130' INT TERM

# The engine runs as a file named dockerd, as on a node: the kernel names the process after it
# (/proc/PID/comm), and what looks for the engine by name must find it here too.
engine=$tmp/bin/dockerd
mkdir -p "$tmp/bin"
cp "$dockerd" "$engine"

# start_daemon N: start dockerd in a fresh slave mount namespace, as MountFlags=slave does, and wait
# until it answers. dockerd starts and supervises its own containerd, so containerd is restarted
# with it (as in the incident) and the shims are the only thing left in the old namespace.
start_daemon() {
	local n=$1 i launcher
	rm -f "$pidfile"
	# --userland-proxy=false: the proxy is docker-proxy, which a machine with only Debian's
	# containerd and runc lacks, and dockerd refuses to start without it ("invalid
	# userland-proxy-path"); the containers here have no network to proxy anyway. Both network flags
	# exist in every engine the harness runs (20.10, 26.1, 28.5).
	setsid -w ${emulator:+"$emulator" --} unshare -m --propagation slave \
		${rejoin:+"$rejoin" rejoin --root "$data" --} "$engine" \
		--data-root "$data" --exec-root "$exec_root" -H "unix://$sock" --pidfile "$pidfile" \
		--live-restore --iptables=false --ip6tables=false --userland-proxy=false --bridge=none "${storage_flags[@]}" \
		--debug </dev/null >"$tmp/dockerd-$n.log" 2>&1 &
	launcher=$!
	for i in $(seq 300); do
		kill -0 "$launcher" 2>/dev/null || { tail -n 30 "$tmp/dockerd-$n.log" >&2; die "dockerd #$n exited during start-up; log above"; }
		if [[ -s $pidfile ]] && timeout 5 "$docker_cli" version >/dev/null 2>&1; then break; fi
		sleep 0.2
	done
	timeout 5 "$docker_cli" version >/dev/null 2>&1 || { tail -n 30 "$tmp/dockerd-$n.log" >&2; die "dockerd #$n did not answer on $sock within 60 s"; }
	daemon_pid=$(<"$pidfile")
	namespaces+=("$(readlink "/proc/$daemon_pid/ns/mnt")")
	[[ ${namespaces[-1]} != "$self_ns" ]] || die "dockerd #$n runs in this script's mount namespace; unshare -m did not take effect"
	log "dockerd #$n pid $daemon_pid in ${namespaces[-1]}"
	[[ -z $rejoin ]] || log "dockerd #$n $(grep -m1 '^nsdetach rejoin: ' "$tmp/dockerd-$n.log")"
}

# shims_in_ns NS prints the pids of the containerd shims in mount namespace NS.
shims_in_ns() {
	local p
	for p in /proc/[0-9]*; do
		[[ $(readlink "$p/ns/mnt" 2>/dev/null) == "$1" && $(cat "$p/comm" 2>/dev/null) == containerd-shim* ]] && echo "${p#/proc/}"
	done
	return 0
}

# kernel_mark prints the timestamp of the kernel log's last message (0 when it is empty or
# unreadable); kernel_inuse MARK prints how many "upperdir is in-use" messages came after it
# (machine-wide: other overlay users on the host count too). Messages after a mark, not a difference
# of totals: on a busy machine the ring buffer drops old messages during a run, and the difference
# went negative (restore_inuse=-6).
kernel_mark() {
	dmesg 2>/dev/null | awk 'match($0, /^\[ *[0-9]+\.[0-9]+\]/) { t = substr($0, RSTART + 1, RLENGTH - 2) + 0 } END { printf "%.6f\n", t + 0 }'
}
kernel_inuse() {
	dmesg 2>/dev/null | awk -v mark="$1" 'match($0, /^\[ *[0-9]+\.[0-9]+\]/) { t = substr($0, RSTART + 1, RLENGTH - 2) + 0 }
		t > mark + 0 && /is in-use as upperdir\/workdir/ { n++ } END { print n + 0 }'
}

# stop_daemon: SIGTERM by pid, as `systemctl restart docker` does, and wait until it is gone.
stop_daemon() {
	local i
	kill -TERM "$daemon_pid"
	for i in $(seq 300); do
		[[ -d /proc/$daemon_pid ]] || return 0
		sleep 0.2
	done
	die "dockerd pid $daemon_pid did not exit within 60 s of SIGTERM"
}

kernel_mark_start=$(kernel_mark)
start_daemon 1
"$docker_cli" version --format 'e2e: daemon {{.Server.Version}}, client {{.Client.Version}}' >&2
driver_type=$("$docker_cli" info --format '{{range .DriverStatus}}{{index . 0}}={{index . 1}} {{end}}')
log "storage: $("$docker_cli" info --format '{{.Driver}}') ($driver_type), runc: $(runc --version | head -n1)"
if [[ $storage == snapshotter ]]; then
	[[ $driver_type == *io.containerd.snapshotter.v1* ]] || die "--storage snapshotter, but dockerd uses no containerd snapshotter ($driver_type): Engine 29 or later is needed"
else
	[[ $driver_type != *io.containerd.snapshotter.v1* ]] || die "--storage overlay2, but dockerd uses the containerd image store ($driver_type)"
fi

mkdir -p "$tmp/rootfs/bin"
cp /bin/busybox "$tmp/rootfs/bin/busybox"
for a in $(/bin/busybox --list); do
	[[ $a == busybox ]] || ln -s busybox "$tmp/rootfs/bin/$a"
done
tar -C "$tmp/rootfs" -c . | "$docker_cli" import - nsdetach-busybox >/dev/null || die "docker import failed"

# ids[0..N-1] are removed after the restart, ids[N..N+K-1] survive it.
: >"$tmp/dirs.tsv"
for i in $(seq "$((containers + survivors))"); do
	name=nsdetach-e2e-$i
	((i > containers)) && name=nsdetach-e2e-keep-$((i - containers))
	# Every other container gets --ipc shareable, as a Kubernetes pod's sandbox does: dockerd then
	# mounts its /dev/shm under the container's directory, in dockerd's own namespace.
	ipc=private
	((i % 2)) || ipc=shareable
	id=$(timeout 120 "$docker_cli" run -d --network none --ipc "$ipc" --name "$name" nsdetach-busybox /bin/sleep 100000) ||
		die "docker run #$i failed"
	ids+=("$id")
	if [[ $storage == overlay2 ]]; then
		merged=$("$docker_cli" inspect -f '{{.GraphDriver.Data.MergedDir}}' "$id")
		[[ $merged == "$data"/overlay2/*/merged ]] || die "container $id has no overlay2 merged directory under $data ($merged)"
		printf '%s\t%s %s %s\n' "$id" "${merged%/merged}" "${merged%/merged}-init" "$data/containers/$id" >>"$tmp/dirs.tsv"
	else
		# The snapshot is the directory of the rootfs overlay's upperdir, in dockerd's namespace.
		rootfs=$data/rootfs/overlayfs/$id
		upper=$(awk -v mp="$rootfs" '$5 == mp { for (i = 7; $i != "-"; i++) {}; if (match("," $(i + 3) ",", /,upperdir=[^,]*,/)) print substr("," $(i + 3) ",", RSTART + 10, RLENGTH - 11) }' "/proc/$daemon_pid/mountinfo")
		[[ $upper == "$data"/*/fs ]] || die "container $id has no overlay rootfs at $rootfs with an upperdir under $data (upperdir '$upper')"
		printf '%s\t%s %s %s\n' "$id" "$rootfs" "${upper%/fs}" "$data/containers/$id" >>"$tmp/dirs.tsv"
	fi
done
removed_ids=("${ids[@]:0:containers}")
survivor_ids=("${ids[@]:containers}")
survivor_prefixes=()
for id in "${survivor_ids[@]}"; do
	read -ra p <<<"$(prefixes_of "$id")"
	survivor_prefixes+=("${p[@]}")
done
log "started $containers containers to remove and $survivors to keep"

# running IDS... prints how many of IDS are running.
running() {
	local id n=0
	for id in "$@"; do
		[[ $(timeout 10 "$docker_cli" inspect -f '{{.State.Running}}' "$id" 2>/dev/null) == true ]] && n=$((n + 1))
	done
	echo "$n"
}

stop_daemon
old_ns=${namespaces[0]}
old_ns_procs=$(procs_in_ns "$old_ns")
scan_mounts "$data" >"$tmp/mounts-stopped.txt"
held=$(awk -v ns="$old_ns" '$1 == ns' "$tmp/mounts-stopped.txt" | wc -l)
log "dockerd #1 stopped; $old_ns_procs processes (the shims) keep its namespace $old_ns and $held mounts in it alive"
mapfile -t old_shims < <(shims_in_ns "$old_ns")
restore_mark=$(kernel_mark)
start_daemon 2
restore_inuse=$(kernel_inuse "$restore_mark")
new_ns=${namespaces[1]}
rejoined=1
((${#old_shims[@]})) || rejoined=0
for p in "${old_shims[@]}"; do
	[[ $(readlink "/proc/$p/ns/mnt" 2>/dev/null) == "$new_ns" ]] || rejoined=0
done
[[ -z $rejoin ]] || log "dockerd #2 in $new_ns; the ${#old_shims[@]} shims of dockerd #1 in it: rejoined=$rejoined; $restore_inuse new 'upperdir is in-use' kernel messages during its start"
log "after restart $(running "${ids[@]}") of ${#ids[@]} containers are running (live-restore)"
# Whether the restarted daemon's restore left the old namespace's copies alone (old kernels) or
# took them away as a side effect of rmdir (detach-on-rmdir kernels).
scan_mounts "$data" >"$tmp/mounts-restarted.txt"
foreign=0
[[ $old_ns == "$new_ns" ]] || foreign=$(awk -v ns="$old_ns" '$1 == ns' "$tmp/mounts-restarted.txt" | wc -l)
log "$foreign mounts under the data root remain in $old_ns, apart from dockerd #2's, after dockerd #2 started"
# runc exec works in the container's root directory (the layer's merged directory) as seen from
# the restarted daemon: a restore that removed it breaks `docker exec`.
exec_ok=1
for id in "${survivor_ids[@]}"; do
	out=$(timeout 60 "$docker_cli" exec "$id" true 2>&1) || { exec_ok=0; log "docker exec into restored ${id:0:12} failed: $out"; }
done

# The removals: the numbers the patch series must change. Each rm is timed on its own (a stop before
# it is not), and every namespace is scanned for the container's mounts right after it.
# The stops go in one command: the CLI stops its arguments in parallel.
to_stop=()
for i in "${!removed_ids[@]}"; do
	[[ $method == stop+rm ]] || { [[ $method == alternate ]] && ((i % 2 == 1)); } && to_stop+=("${removed_ids[$i]}")
done
((${#to_stop[@]} == 0)) || timeout 300 "$docker_cli" stop -t 2 "${to_stop[@]}" >/dev/null 2>&1 || true
printf 'id\tmethod\tok\tms\tforeign\terror\n' >"$tmp/removals.tsv"
: >"$tmp/foreign-after-rm.txt"
removed=0 failed=0 busy=0 rm_total=0 rm_max=0 foreign_after=0
for i in "${!removed_ids[@]}"; do
	id=${removed_ids[$i]}
	how=$method
	[[ $how != alternate ]] || { ((i % 2 == 0)) && how=rm-f || how=stop+rm; }
	t0=$(now_ms)
	if [[ $how == rm-f ]]; then
		err=$(timeout 300 "$docker_cli" rm -f "$id" 2>&1 >/dev/null) && ok=1 || ok=0
	else
		err=$(timeout 300 "$docker_cli" rm "$id" 2>&1 >/dev/null) && ok=1 || ok=0
	fi
	ms=$(($(now_ms) - t0))
	err=${err//$'\n'/ }
	rm_total=$((rm_total + ms))
	((ms > rm_max)) && rm_max=$ms
	if ((ok)); then removed=$((removed + 1)); else failed=$((failed + 1)); fi
	[[ $err == *"device or resource busy"* ]] && busy=$((busy + 1))
	# shellcheck disable=SC2046 # one word per directory
	n=$(scan_mounts "$data" | owned_by $(prefixes_of "$id") | tee -a "$tmp/foreign-after-rm.txt" | wc -l)
	foreign_after=$((foreign_after + n))
	printf '%s\t%s\t%s\t%s\t%s\t%s\n' "${id:0:12}" "$how" "$ok" "$ms" "$n" "$err" >>"$tmp/removals.tsv"
	printf 'REMOVAL id=%s method=%s ok=%s ms=%s foreign=%s error=%q\n' "${id:0:12}" "$how" "$ok" "$ms" "$n" "$err"
done
((foreign_after == 0)) || { log "mounts of removed containers right after their removal (namespace pid mountpoint fstype upperdir comm):"; cat "$tmp/foreign-after-rm.txt" >&2; }

"$docker_cli" ps -a --no-trunc --format '{{.ID}}\t{{.Status}}' >"$tmp/ps-a.txt"
left=$(grep -Fvf <(printf '%s\n' "${survivor_ids[@]}" _none_) "$tmp/ps-a.txt" || true)
ps_left=$(grep -c . <<<"$left" || true)
stuck=$(grep -cE 'Removal In Progress|Dead' <<<"$left" || true)
((ps_left == 0)) || { log "removed containers still in docker ps -a:"; echo "$left" >&2; }
survivors_running=$(running "${survivor_ids[@]}")

scan_mounts "$data" >"$tmp/mounts.txt"
grep -Fvxf <(owned_by "${survivor_prefixes[@]}" <"$tmp/mounts.txt"; echo _none_) "$tmp/mounts.txt" >"$tmp/mounts-leaked.txt" || true
leaked=$(wc -l <"$tmp/mounts-leaked.txt")
((leaked == 0)) || { log "mounts under $data besides the survivors' (namespace pid mountpoint fstype upperdir comm):"; cat "$tmp/mounts-leaked.txt" >&2; }
unmount_errors=$(grep -c 'Failed to unmount' "$tmp/dockerd-2.log" || true)
dirs_left=$(dirs_left "${removed_ids[@]}")

# --daemonset: the DaemonSet's image against the leaks the removals left (integration/e2e/daemonset.sh).
daemonset_ok=
if [[ -n $daemonset ]]; then
	want_stale=()
	[[ $expect != incident ]] || want_stale=(--want-stale)
	daemonset_ok=1
	"$(dirname "${BASH_SOURCE[0]}")/daemonset.sh" --nsdetach "$daemonset" --data "$data" --dockerd-pid "$daemon_pid" \
		--work "$tmp/daemonset" --docker "$docker_cli" "${want_stale[@]}" "${survivor_ids[@]}" || daemonset_ok=0
fi

# The second restart: the survivors must come through it, and go when asked to.
stop_daemon
start_daemon 3
restart2_running=$(running "${survivor_ids[@]}")
log "after the second restart $restart2_running of $survivors survivors are running"
final_failed=0
for id in "${survivor_ids[@]}"; do
	if ! err=$(timeout 300 "$docker_cli" rm -f "$id" 2>&1 >/dev/null); then
		final_failed=$((final_failed + 1))
		log "removing survivor ${id:0:12} under dockerd #3 failed: ${err//$'\n'/ }"
	fi
done
final_ps=$("$docker_cli" ps -aq | wc -l)
scan_mounts "$data" >"$tmp/mounts-final.txt"
final_leaked=$(wc -l <"$tmp/mounts-final.txt")
final_dirs_left=$(dirs_left "${ids[@]}")
((final_leaked == 0)) || { log "mounts under $data at the end:"; cat "$tmp/mounts-final.txt" >&2; }

# With no live container left nothing pins dockerd #3's namespace once it stops, so the next start
# must not rejoin anything. An fd keeps that namespace's inode from going to the new one.
fresh_ns=
if [[ -n $rejoin ]]; then
	exec {pin}<"/proc/$daemon_pid/ns/mnt"
	last_ns=${namespaces[-1]}
	stop_daemon
	start_daemon 4
	fresh_ns=0
	[[ ${namespaces[-1]} != "$last_ns" ]] && grep -q '^nsdetach rejoin: .*nothing to rejoin' "$tmp/dockerd-4.log" && fresh_ns=1
	exec {pin}<&-
	log "dockerd #4 (zero live containers) in ${namespaces[-1]}, dockerd #3 was in $last_ns: fresh_ns=$fresh_ns"
fi
kernel_inuse=$(kernel_inuse "$kernel_mark_start")

rejoin_keys=
[[ -z $rejoin ]] || rejoin_keys=" rejoined=$rejoined fresh_ns=$fresh_ns"
[[ -z $daemonset ]] || rejoin_keys+=" daemonset=$daemonset_ok"
printf 'RESULT dockerd=%s emulator=%s containers=%s survivors=%s old_ns_procs=%s held_mounts=%s foreign_mounts=%s removed=%s failed=%s busy_errors=%s foreign_after_rm=%s ps_left=%s stuck=%s leaked_mounts=%s survivors_running=%s restart2_running=%s final_failed=%s final_ps=%s final_leaked=%s unmount_log_errors=%s kernel_inuse=%s restore_inuse=%s exec_ok=%s rm_ms_total=%s rm_ms_max=%s duration_s=%s storage=%s dirs_left=%s final_dirs_left=%s%s\n' \
	"$(basename "$dockerd")" "$(basename "${emulator:-none}")" "$containers" "$survivors" "$old_ns_procs" \
	"$held" "$foreign" "$removed" "$failed" "$busy" "$foreign_after" "$ps_left" "$stuck" "$leaked" \
	"$survivors_running" "$restart2_running" "$final_failed" "$final_ps" "$final_leaked" \
	"$unmount_errors" "$kernel_inuse" "$restore_inuse" "$exec_ok" "$rm_total" "$rm_max" "$((SECONDS - start))" "$storage" "$dirs_left" "$final_dirs_left" "$rejoin_keys"

[[ $daemonset_ok != 0 ]] || { log "the DaemonSet's image failed its checks (DAEMONSET line above)"; exit 1; }
case $expect in
incident)
	((busy > 0 && stuck > 0)) || { log "expected the incident (a busy removal leaving a container stuck), got busy_errors=$busy stuck=$stuck"; exit 1; } ;;
removed)
	((failed == 0 && ps_left == 0 && final_failed == 0 && final_ps == 0)) ||
		{ log "expected every removal to succeed, got failed=$failed ps_left=$ps_left final_failed=$final_failed final_ps=$final_ps"; exit 1; } ;;
clean)
	((failed == 0 && ps_left == 0 && foreign_after == 0 && leaked == 0 && survivors_running == survivors && exec_ok == 1 &&
		restart2_running == survivors && final_failed == 0 && final_ps == 0 && final_leaked == 0 &&
		dirs_left == 0 && final_dirs_left == 0)) ||
		{ log "expected a clean run, got failed=$failed ps_left=$ps_left foreign_after_rm=$foreign_after leaked_mounts=$leaked survivors_running=$survivors_running/$survivors exec_ok=$exec_ok restart2_running=$restart2_running/$survivors final_failed=$final_failed final_ps=$final_ps final_leaked=$final_leaked dirs_left=$dirs_left final_dirs_left=$final_dirs_left"; exit 1; }
	[[ -z $rejoin ]] || ((rejoined == 1 && restore_inuse == 0 && exec_ok == 1 && fresh_ns == 1)) ||
		{ log "expected dockerd #2 to rejoin cleanly and #4 to start fresh, got rejoined=$rejoined restore_inuse=$restore_inuse exec_ok=$exec_ok fresh_ns=$fresh_ns"; exit 1; } ;;
esac
