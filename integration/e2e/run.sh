#!/usr/bin/env bash
# run.sh — play the incident of DESIGN.md §1 against a real dockerd and measure the outcome.
#
# usage: run.sh --dockerd PATH [--emulator OLDKERNEL] [--rejoin NSDETACH] [--containers N]
#               [--expect incident|clean] [--logs DIR] [--docker PATH]
#
# dockerd is started like systemd's MountFlags=slave does it (a new slave mount namespace on every
# start) with --live-restore, N containers run `sleep`, dockerd is stopped with SIGTERM and started
# again (new namespace, the shims stay in the old one), and every container is then removed: odd
# ones with `docker rm -f`, even ones with `docker stop` + `docker rm`. The last line on stdout is
# one line of key=value pairs:
#
#   RESULT dockerd= emulator= containers=
#     old_ns_procs=     processes left in dockerd #1's namespace after it stopped (the shims)
#     held_mounts=      mounts under the data root in that namespace then
#     foreign_mounts=   the same once dockerd #2 has started and restored its containers
#     removed= failed=  removals that succeeded / failed; busy_errors= of them "resource busy"
#     ps_left= stuck=   containers in `docker ps -a` afterwards; of them "Removal In Progress"/"Dead"
#     leaked_mounts=    mounts under the data root left in any namespace afterwards
#     unmount_log_errors=  "Failed to unmount" lines in dockerd #2's debug log
#     kernel_inuse=     new "overlayfs: upperdir is in-use" kernel messages (machine-wide count)
#     restore_inuse=    the same, only while dockerd #2 started and restored its containers
#     exec_ok=          1 when `docker exec` into a restored container worked
#     rm_ms_total= rm_ms_max=  latency of the rm commands; duration_s= the whole run
#
# A REMOVAL line per container comes before it.
#
# --emulator runs dockerd as `OLDKERNEL -- dockerd ...`, the old-kernel emulator of DESIGN.md §6,
# which makes rmdir of a mount point held by another namespace fail with EBUSY.
# --rejoin starts every dockerd as `NSDETACH rejoin --root DATA -- dockerd ...` inside the same
# new slave namespace (as the systemd drop-in deploy/systemd/docker.service.d/20-nsdetach-rejoin.conf
# does): dockerd #2 should join dockerd #1's namespace, which the shims keep alive. It adds a third
# start once every container is removed (no shim left: a fresh namespace is expected) and the keys
#     rejoined=         1 when dockerd #2 runs in the namespace of every shim of dockerd #1
#     fresh_ns=         1 when dockerd #3 (zero live containers) got a namespace of its own
# (foreign_mounts= counts only namespaces other than dockerd #2's, so 0 once it rejoined), and
# --expect clean then asserts rejoined=1 restore_inuse=0 exec_ok=1 fresh_ns=1 as well.
# --expect makes the exit status an assertion: incident = a removal failed with "device or resource
# busy" and its container is left "Removal In Progress" or "Dead"; clean = every removal succeeded,
# `docker ps -a` is empty and no namespace holds a mount under the data root.
# Exit status: 0 ok, 1 outcome differs from --expect, 2 usage, 3 the harness itself failed.
#
# Everything it starts is private (data root, exec root, socket, containerd) under one temporary
# directory, and everything it started is killed by pid, unmounted and removed on exit.
set -euo pipefail

usage() {
	sed -n '4,5p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2
	exit 2
}
die() {
	printf 'e2e: %s\n' "$*" >&2
	exit 3
}
log() { printf 'e2e: %s\n' "$*" >&2; }
now_ms() { echo $(($(date +%s%N) / 1000000)); }

dockerd=
emulator=
rejoin=
containers=4
expect=
logs=
docker_cli=docker
while (($#)); do
	case $1 in
	--dockerd) dockerd=${2:?}; shift 2 ;;
	--emulator) emulator=${2:?}; shift 2 ;;
	--rejoin) rejoin=${2:?}; shift 2 ;;
	--containers) containers=${2:?}; shift 2 ;;
	--expect) expect=${2:?}; shift 2 ;;
	--logs) logs=${2:?}; shift 2 ;;
	--docker) docker_cli=${2:?}; shift 2 ;;
	-h | --help) usage ;;
	*) printf 'e2e: unknown argument %s\n' "$1" >&2; usage ;;
	esac
done
[[ -n $dockerd ]] || usage
[[ $containers =~ ^[1-9][0-9]*$ ]] || { log "--containers wants a positive number"; usage; }
case $expect in '' | incident | clean) ;; *) log "--expect incident or clean"; usage ;; esac
[[ $(id -u) -eq 0 ]] || die "must run as root: it creates mount namespaces, overlay mounts and containers"
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

# scan_mounts prints "namespace pid mountpoint fstype comm" per mount under the data root, per
# mount namespace: by mount point, or for overlay by upperdir, which keeps the host path whatever
# the holder's root is. The data root itself is left out: dockerd bind-mounts it onto itself.
scan_mounts() {
	local p ns seen=" "
	for p in /proc/[0-9]*; do
		ns=$(readlink "$p/ns/mnt" 2>/dev/null) || continue
		[[ $seen == *" $ns "* ]] && continue
		seen+="$ns "
		awk -v ns="$ns" -v pid="${p#/proc/}" -v comm="$(cat "$p/comm" 2>/dev/null)" -v root="$data/" '
			{
				for (i = 7; $i != "-"; i++) {}
				if ($5 "/" != root && (index($5 "/", root) == 1 || index($(i + 3), "upperdir=" root) > 0))
					print ns, pid, $5, $(i + 1), comm
			}' "$p/mountinfo" 2>/dev/null || true
	done
}

cleanup() {
	local rc=$? p i pids=()
	set +e
	# A second ^C must not cut the cleanup short.
	trap '' INT TERM
	trap - EXIT
	if [[ -n $logs ]]; then
		mkdir -p "$logs" && cp "$tmp"/*.log "$tmp"/*.txt "$tmp"/*.tsv "$logs"/ 2>/dev/null
	fi
	# With live-restore a stopped daemon leaves its containers running: remove them while it is up.
	# Every container of this private daemon is this run's, also one whose `docker run` was cut short.
	if [[ -S $sock ]] && timeout 10 "$docker_cli" version >/dev/null 2>&1; then
		mapfile -t -O "${#ids[@]}" ids < <(timeout 10 "$docker_cli" ps -aq --no-trunc)
		for i in "${ids[@]}"; do timeout 30 "$docker_cli" rm -f "$i" >/dev/null 2>&1; done
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

# start_daemon N: start dockerd in a fresh slave mount namespace, as MountFlags=slave does, and wait
# until it answers. dockerd starts and supervises its own containerd, so containerd is restarted
# with it (as in the incident) and the shims are the only thing left in the old namespace.
start_daemon() {
	local n=$1 i launcher
	rm -f "$pidfile"
	setsid -w unshare -m --propagation slave ${emulator:+"$emulator" --} \
		${rejoin:+"$rejoin" rejoin --root "$data" --} "$dockerd" \
		--data-root "$data" --exec-root "$exec_root" -H "unix://$sock" --pidfile "$pidfile" \
		--live-restore --iptables=false --ip6tables=false --bridge=none --storage-driver=overlay2 \
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

# kernel_inuse prints how many "upperdir is in-use" messages the kernel log has (machine-wide:
# other overlay users on the host count too).
kernel_inuse() {
	dmesg 2>/dev/null | grep -c 'is in-use as upperdir/workdir' || true
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

kernel_inuse_before=$(kernel_inuse)
start_daemon 1
"$docker_cli" version --format 'e2e: daemon {{.Server.Version}}, client {{.Client.Version}}' >&2

mkdir -p "$tmp/rootfs/bin"
cp /bin/busybox "$tmp/rootfs/bin/busybox"
for a in $(/bin/busybox --list); do
	[[ $a == busybox ]] || ln -s busybox "$tmp/rootfs/bin/$a"
done
tar -C "$tmp/rootfs" -c . | "$docker_cli" import - nsdetach-busybox >/dev/null || die "docker import failed"

for i in $(seq "$containers"); do
	id=$(timeout 120 "$docker_cli" run -d --network none --name "nsdetach-e2e-$i" nsdetach-busybox /bin/sleep 100000) ||
		die "docker run #$i failed"
	ids+=("$id")
done
log "started $containers containers"

stop_daemon
old_ns=${namespaces[0]}
old_ns_procs=$(procs_in_ns "$old_ns")
scan_mounts >"$tmp/mounts-stopped.txt"
held=$(awk -v ns="$old_ns" '$1 == ns' "$tmp/mounts-stopped.txt" | wc -l)
log "dockerd #1 stopped; $old_ns_procs processes (the shims) keep its namespace $old_ns and $held mounts in it alive"
mapfile -t old_shims < <(shims_in_ns "$old_ns")
restore_inuse_before=$(kernel_inuse)
start_daemon 2
restore_inuse=$(($(kernel_inuse) - restore_inuse_before))
new_ns=${namespaces[1]}
rejoined=1
((${#old_shims[@]})) || rejoined=0
for p in "${old_shims[@]}"; do
	[[ $(readlink "/proc/$p/ns/mnt" 2>/dev/null) == "$new_ns" ]] || rejoined=0
done
[[ -z $rejoin ]] || log "dockerd #2 in $new_ns; the ${#old_shims[@]} shims of dockerd #1 in it: rejoined=$rejoined; $restore_inuse new 'upperdir is in-use' kernel messages during its start"
running=$("$docker_cli" ps -q --no-trunc | wc -l)
log "after restart $running of $containers containers are running (live-restore)"
# Whether the restarted daemon's restore left the old namespace's copies alone (old kernels) or
# took them away as a side effect of rmdir (detach-on-rmdir kernels).
scan_mounts >"$tmp/mounts-restarted.txt"
foreign=0
[[ $old_ns == "$new_ns" ]] || foreign=$(awk -v ns="$old_ns" '$1 == ns' "$tmp/mounts-restarted.txt" | wc -l)
log "$foreign mounts under the data root remain in $old_ns, apart from dockerd #2's, after dockerd #2 started"

# A restored container is reachable the way an operator reaches it.
exec_ok=0
exec_out=$(timeout 30 "$docker_cli" exec "${ids[0]}" /bin/sh -c 'echo ok' 2>&1) || true
[[ $exec_out == ok ]] && exec_ok=1
((exec_ok)) && exec_out=
log "docker exec into restored container ${ids[0]:0:12}: exec_ok=$exec_ok${exec_out:+ (${exec_out//$'\n'/ })}"

# The removals: the numbers the patch series must change.
printf 'id\tmethod\tok\tms\terror\n' >"$tmp/removals.tsv"
removed=0 failed=0 busy=0 rm_total=0 rm_max=0
for i in "${!ids[@]}"; do
	id=${ids[$i]}
	if ((i % 2 == 0)); then
		method=rm-f
		t0=$(now_ms)
		err=$(timeout 300 "$docker_cli" rm -f "$id" 2>&1 >/dev/null) && ok=1 || ok=0
	else
		method=stop+rm
		timeout 120 "$docker_cli" stop -t 2 "$id" >/dev/null 2>&1 || true
		t0=$(now_ms)
		err=$(timeout 300 "$docker_cli" rm "$id" 2>&1 >/dev/null) && ok=1 || ok=0
	fi
	ms=$(($(now_ms) - t0))
	err=${err//$'\n'/ }
	rm_total=$((rm_total + ms))
	((ms > rm_max)) && rm_max=$ms
	if ((ok)); then removed=$((removed + 1)); else failed=$((failed + 1)); fi
	[[ $err == *"device or resource busy"* ]] && busy=$((busy + 1))
	printf '%s\t%s\t%s\t%s\t%s\n' "${id:0:12}" "$method" "$ok" "$ms" "$err" >>"$tmp/removals.tsv"
	printf 'REMOVAL id=%s method=%s ok=%s ms=%s error=%q\n' "${id:0:12}" "$method" "$ok" "$ms" "$err"
done

"$docker_cli" ps -a --no-trunc --format '{{.ID}}\t{{.Status}}' >"$tmp/ps-a.txt"
ps_left=$(wc -l <"$tmp/ps-a.txt")
stuck=$(grep -cE 'Removal In Progress|Dead' "$tmp/ps-a.txt" || true)
((ps_left == 0)) || { log "docker ps -a after the removals:"; cat "$tmp/ps-a.txt" >&2; }

scan_mounts >"$tmp/mounts.txt"
leaked=$(wc -l <"$tmp/mounts.txt")
((leaked == 0)) || { log "mounts under $data (namespace pid mountpoint fstype comm):"; cat "$tmp/mounts.txt" >&2; }
unmount_errors=$(grep -c 'Failed to unmount' "$tmp/dockerd-2.log" || true)

# With no live container left nothing pins dockerd #2's namespace once it stops, so the next start
# must not rejoin anything. An fd keeps that namespace's inode from going to the new one.
fresh_ns=
if [[ -n $rejoin ]]; then
	exec {pin}<"/proc/$daemon_pid/ns/mnt"
	stop_daemon
	start_daemon 3
	fresh_ns=0
	[[ ${namespaces[2]} != "$new_ns" ]] && grep -q '^nsdetach rejoin: .*nothing to rejoin' "$tmp/dockerd-3.log" && fresh_ns=1
	exec {pin}<&-
	log "dockerd #3 (zero live containers) in ${namespaces[2]}, dockerd #2 was in $new_ns: fresh_ns=$fresh_ns"
fi
kernel_inuse=$(($(kernel_inuse) - kernel_inuse_before))

rejoin_keys=
[[ -z $rejoin ]] || rejoin_keys=" rejoined=$rejoined fresh_ns=$fresh_ns"
printf 'RESULT dockerd=%s emulator=%s containers=%s old_ns_procs=%s held_mounts=%s foreign_mounts=%s removed=%s failed=%s busy_errors=%s ps_left=%s stuck=%s leaked_mounts=%s unmount_log_errors=%s kernel_inuse=%s restore_inuse=%s exec_ok=%s rm_ms_total=%s rm_ms_max=%s duration_s=%s%s\n' \
	"$(basename "$dockerd")" "$(basename "${emulator:-none}")" "$containers" "$old_ns_procs" \
	"$held" "$foreign" "$removed" "$failed" "$busy" "$ps_left" "$stuck" "$leaked" "$unmount_errors" \
	"$kernel_inuse" "$restore_inuse" "$exec_ok" "$rm_total" "$rm_max" "$((SECONDS - start))" "$rejoin_keys"

case $expect in
incident)
	((busy > 0 && stuck > 0)) || { log "expected the incident (a busy removal leaving a container stuck), got busy_errors=$busy stuck=$stuck"; exit 1; } ;;
clean)
	((failed == 0 && ps_left == 0 && leaked == 0)) || { log "expected a clean run, got failed=$failed ps_left=$ps_left leaked_mounts=$leaked"; exit 1; }
	[[ -z $rejoin ]] || ((rejoined == 1 && restore_inuse == 0 && exec_ok == 1 && fresh_ns == 1)) ||
		{ log "expected dockerd #2 to rejoin cleanly and #3 to start fresh, got rejoined=$rejoined restore_inuse=$restore_inuse exec_ok=$exec_ok fresh_ns=$fresh_ns"; exit 1; } ;;
esac
