#!/usr/bin/env bash
# main.sh — runs inside the vm-e2e guest as nsdetach-vm.service (systemd is PID 1), reads what the
# host asks for in /mnt/host/request and writes its results under /mnt/host/out/NAME; the guest
# powers off when it exits.
#
#   smoke        systemd came up, Debian's docker.service starts, a shell runs: what CI checks
#   case NAME    the scenario with one configuration of docker.service (NAME below)
#
# Every case configures docker.service as the incident's hosts had it: a drop-in with
# MountFlags=slave and --live-restore, and dockerd starting its own containerd (containerd.service
# is masked in the image). Debian's kernel detaches a mount on rmdir, so dockerd runs under the
# old-kernel emulator (bin/oldkernel) as integration/e2e/run.sh runs it, for the EBUSY half.
# Then: N containers to remove (every other one --ipc shareable) and K survivors, `systemctl
# restart docker`, the removals (odd ones `docker rm -f`, even ones `docker stop` + `docker rm`),
# `nsdetach doctor`, a second restart, the survivors removed, `nsdetach doctor` again.
#   stock     nothing more: the incident
#   shared    deploy/systemd/docker.service.d/10-nsdetach-mountflags.conf
#   rejoin    deploy/systemd/docker.service.d/20-nsdetach-rejoin.conf, its ExecStart line filled
#             in with the unit's command line, as its comment says to
#   patched   the patched dockerd (`make dockerd`) in place of Debian's binary
#   detach    stock, and `nsdetach detach --root /var/lib/docker --stale-only` after a removal
#             failed, then the failed removals again
# The last line of out/NAME/result is one line of key=value pairs (see the printf at the end).
set -uo pipefail

share=/mnt/host
read -r mode name <"$share/request" || true
[[ $mode == smoke ]] && name=smoke
out=$share/out/$name
mkdir -p "$out"
exec > >(tee "$out/guest.log") 2>&1
# Power off as soon as this is done: what was written to the share is on the host already (9p
# writes through), the disk is a throwaway snapshot, and an orderly shutdown with live containers
# and a 9p mount takes long under emulation.
trap 'sync; systemctl poweroff -ff' EXIT
log() { printf 'vm[%s]: %s\n' "$name" "$*"; }
fail() {
	log "FAILED: $*"
	echo "FAILED $*" >"$out/result"
	journalctl -u docker --no-pager >"$out/docker-journal.txt" 2>&1
	{ systemctl status docker --no-pager; ps -eo pid,ppid,stat,wchan:32,args; } >"$out/processes.txt" 2>&1
	exit 1
}
now_ms() { echo $(($(date +%s%N) / 1000000)); }

log "kernel $(uname -r), $(systemctl --version | head -n1), pid 1 is $(cat /proc/1/comm)"
# This unit is part of the boot (multi-user.target wants it): the system counts as "starting"
# until it is done, so the check is that no unit failed.
state=$(systemctl --failed --no-legend --plain | awk '{print $1}' | paste -sd, -)
state=${state:-no failed units}
log "systemd: $state"

drop=/etc/systemd/system/docker.service.d
mkdir -p "$drop" /etc/docker
cmdline="/usr/sbin/dockerd -H fd:// --live-restore"
printf '# As on the incident'"'"'s hosts.\n[Service]\nMountFlags=slave\nExecStart=\nExecStart=%s\n' "$cmdline" >"$drop/05-incident.conf"
# The guest has no network to give containers.
echo '{"iptables": false, "bridge": "none"}' >/etc/docker/daemon.json

if [[ $mode == smoke ]]; then
	# The incident's docker.service, without the emulator.
	systemctl daemon-reload
	systemctl cat docker.service >"$out/docker.service.txt"
	systemctl start docker.socket docker.service || fail "docker.service did not start"
	docker version --format 'docker {{.Server.Version}}, containerd from {{range .Server.Components}}{{.Name}} {{.Version}}; {{end}}' ||
		fail "docker does not answer"
	/bin/bash -c 'echo "a shell runs: $BASH_VERSION"'
	echo "OK systemd: $state; docker $(docker version -f '{{.Server.Version}}') ($(systemctl show -p MountFlags --value docker) mount propagation)" >"$out/result"
	exit 0
fi

case $name in stock | shared | rejoin | patched | detach) ;; *) fail "unknown case '$name'" ;; esac
data=/var/lib/docker
containers=$(<"$share/containers")
survivors=$(<"$share/survivors")
lib=/usr/local/lib/nsdetach-vm

install -m 0755 "$share/bin/nsdetach" /usr/local/bin/nsdetach
install -m 0755 "$share/bin/oldkernel" /usr/local/bin/oldkernel
mkdir -p "$lib"
# The engine binary moves to $lib/dockerd (its process is still named dockerd, as doctor and
# rejoin look for it); /usr/sbin/dockerd becomes the emulator's wrapper, so that every ExecStart=
# variant, the rejoin launcher's included, starts it under the emulator.
if [[ $name == patched ]]; then
	install -m 0755 "$share/bin/dockerd-patched" "$lib/dockerd"
else
	mv /usr/sbin/dockerd "$lib/dockerd"
fi
install -m 0755 "$share/guest/dockerd-wrapper.sh" /usr/sbin/dockerd
install -m 0755 "$share/guest/dockerd-child.sh" "$lib/dockerd-child"
# The wrapper's dockerd is not the unit's first process: it claims the main pid itself.
printf '[Service]\nNotifyAccess=all\n' >"$drop/00-nsdetach-vm-oldkernel.conf"
case $name in
shared) install -m 0644 "$share/deploy/10-nsdetach-mountflags.conf" "$drop/" ;;
rejoin)
	sed "s|^ExecStart=/usr/local/bin/nsdetach rejoin -- .*|ExecStart=/usr/local/bin/nsdetach rejoin -- $cmdline|" \
		"$share/deploy/20-nsdetach-rejoin.conf" >"$drop/20-nsdetach-rejoin.conf"
	grep -qxF "ExecStart=/usr/local/bin/nsdetach rejoin -- $cmdline" "$drop/20-nsdetach-rejoin.conf" ||
		fail "the rejoin drop-in has no ExecStart line to fill in"
	;;
esac
systemctl daemon-reload
systemctl cat docker.service >"$out/docker.service.txt"
log "docker.service: MountFlags=$(systemctl show -p MountFlags --value docker) ExecStart: $(systemctl show -p ExecStart --value docker | sed 's/.*argv\[\]=\([^;]*\);.*/\1/')"

# wait_docker: until the daemon answers (systemctl has returned once it said READY=1), 5 minutes
# at most.
wait_docker() {
	local end=$((SECONDS + 300))
	while ((SECONDS < end)); do
		timeout 10 docker version >/dev/null 2>&1 && return 0
		sleep 0.2
	done
	return 1
}
daemon_ns() { readlink "/proc/$(systemctl show -p MainPID --value docker)/ns/mnt"; }
# start_docker VERB UNIT...: `systemctl VERB UNIT...`, then up to twice `systemctl start`. Under
# TCG on a loaded host dockerd 20.10 sometimes gives up waiting for the containerd it starts
# ("timeout waiting for containerd to start") and the unit fails; each such attempt is logged and
# counted in start_failures.
start_failures=0
start_docker() {
	local try
	for try in 1 2 3; do
		# Debian's unit has TimeoutStartSec=0: a start that hangs would never return.
		timeout 600 systemctl "$@" && return 0
		start_failures=$((start_failures + 1))
		log "systemctl $* failed (attempt $try): $(journalctl -u docker --no-pager -o cat -n 4 | tr '\n' ' ')"
		systemctl reset-failed docker.service docker.socket
		set -- start docker.socket docker.service
	done
	return 1
}
# restart N: `systemctl restart docker`, timed until the daemon answers.
restart_ms=()
restart() {
	local t0
	t0=$(now_ms)
	start_docker restart docker.service || fail "systemctl restart docker #$1 failed"
	wait_docker || fail "dockerd does not answer after restart #$1"
	restart_ms+=($(($(now_ms) - t0)))
	log "restart #$1: ${restart_ms[-1]} ms, dockerd pid $(systemctl show -p MainPID --value docker) in $(daemon_ns)"
}

start_docker start docker.socket docker.service || fail "docker.service did not start"
wait_docker || fail "dockerd does not answer"
main=$(systemctl show -p MainPID --value docker)
[[ $(cat "/proc/$main/comm") == dockerd ]] || fail "docker.service's main pid $main is $(cat "/proc/$main/comm"), not dockerd"
host_ns=$(readlink /proc/1/ns/mnt)
log "dockerd $(docker version -f '{{.Server.Version}}') pid $main in $(daemon_ns) (pid 1: $host_ns), under $(tr '\0' ' ' </proc/"$(awk '/^PPid/ {print $2}' /proc/"$main"/status)"/cmdline)"

rootfs=$(mktemp -d)
mkdir -p "$rootfs/bin"
cp /bin/busybox "$rootfs/bin/busybox"
ln -s busybox "$rootfs/bin/sh"
ln -s busybox "$rootfs/bin/sleep"
ln -s busybox "$rootfs/bin/true"
tar -C "$rootfs" -c . | docker import - nsdetach-busybox >/dev/null || fail "docker import failed"
rm -rf "$rootfs"

ids=()
: >/run/dirs.tsv
for i in $(seq "$((containers + survivors))"); do
	ipc=private
	((i % 2)) || ipc=shareable
	id=$(timeout 300 docker run -d --network none --ipc "$ipc" nsdetach-busybox /bin/sleep 100000) || fail "docker run #$i failed"
	ids+=("$id")
	merged=$(docker inspect -f '{{.GraphDriver.Data.MergedDir}}' "$id")
	printf '%s\t%s\t%s\n' "$id" "${merged%/merged}" "$data/containers/$id" >>/run/dirs.tsv
done
removed_ids=("${ids[@]:0:containers}")
survivor_ids=("${ids[@]:containers}")
log "started $containers containers to remove and $survivors to keep"

# scan_mounts DATA and owned_by PREFIX...: what is mounted below the data root in every namespace
# (integration/e2e/mounts.sh, shared in by vm-e2e.sh).
# shellcheck source=integration/e2e/mounts.sh
. "$share/guest/mounts.sh"
# owned_by_ids ID...: the scan_mounts lines of those containers (layer, init layer, container dir).
owned_by_ids() {
	# shellcheck disable=SC2046 # one word per directory
	owned_by $(awk -v ids=" $* " 'index(ids, " " $1 " ") { print $2, $2 "-init", $3 }' /run/dirs.tsv)
}
running() {
	local id n=0
	for id in "$@"; do
		[[ $(timeout 30 docker inspect -f '{{.State.Running}}' "$id" 2>/dev/null) == true ]] && n=$((n + 1))
	done
	echo "$n"
}
# remove ID...: odd ones `docker rm -f`, even ones `docker stop` + `docker rm`; the ids that
# failed go to the array failed. With the detach case a failure is followed by `nsdetach detach
# --stale-only` and the failed ones once more.
busy=0 detached_runs=0 failed=()
remove() {
	local i id err again=()
	failed=()
	for i in $(seq 0 $(($# - 1))); do
		id=${*:i+1:1}
		if ((i % 2 == 0)); then
			err=$(timeout 300 docker rm -f "$id" 2>&1 >/dev/null) || failed+=("$id")
		else
			timeout 300 docker stop -t 2 "$id" >/dev/null 2>&1
			err=$(timeout 300 docker rm "$id" 2>&1 >/dev/null) || failed+=("$id")
		fi
		[[ -z $err ]] || log "removing ${id:0:12}: ${err//$'\n'/ }"
		[[ $err != *"device or resource busy"* ]] || busy=$((busy + 1))
	done
	if [[ $name == detach ]] && ((${#failed[@]})); then
		detached_runs=$((detached_runs + 1))
		nsdetach detach --root "$data" --stale-only >"$out/detach-$detached_runs.txt" 2>&1
		log "nsdetach detach --root $data --stale-only: exit $?: $(tail -n1 "$out/detach-$detached_runs.txt")"
		for id in "${failed[@]}"; do
			err=$(timeout 300 docker rm -f "$id" 2>&1 >/dev/null) || again+=("$id")
			[[ -z $err ]] || log "removing ${id:0:12} again: ${err//$'\n'/ }"
		done
		failed=("${again[@]}")
	fi
}
# dead: containers in `docker ps -a` that are Dead or "Removal In Progress".
dead() { docker ps -a --format '{{.Status}}' | grep -cE 'Dead|Removal In Progress'; }

old_ns=$(daemon_ns)
restart 1
new_ns=$(daemon_ns)
survivors_1=$(running "${survivor_ids[@]}")
foreign=0
[[ $old_ns == "$new_ns" ]] || foreign=$(scan_mounts "$data" | awk -v ns="$old_ns" '$1 == ns' | wc -l)
log "dockerd #1 was in $old_ns; $foreign mounts below $data remain there; $survivors_1/$survivors survivors run"

remove "${removed_ids[@]}"
rm_failed=("${failed[@]}")
removed_ok=$((containers - ${#rm_failed[@]}))
scan_mounts "$data" >"$out/mounts-after-rm.txt"
leaked_rm=$(owned_by_ids "${removed_ids[@]}" <"$out/mounts-after-rm.txt" | tee "$out/leaked-after-rm.txt" | wc -l)
dead_rm=$(dead)
docker ps -a >"$out/ps-after-rm.txt"
log "removals: $removed_ok/$containers ok, $busy busy, $dead_rm Dead or Removal In Progress, $leaked_rm mounts of removed containers left"

# Whatever this case is, doctor sees the node as it is now.
nsdetach doctor >"$out/doctor-after-rm.txt" 2>&1
doctor_rm=$?
log "nsdetach doctor after the removals: exit $doctor_rm"
cat "$out/doctor-after-rm.txt"

restart 2
survivors_2=$(running "${survivor_ids[@]}")
remove "${survivor_ids[@]}"
final_failed=("${failed[@]}")
# What is left of the removals that failed (Dead): one last `docker rm -f` each, as an operator
# would, counted in final_ps if it fails too.
for id in "${rm_failed[@]}" "${final_failed[@]}"; do timeout 300 docker rm -f "$id" >/dev/null 2>&1; done
final_ps=$(docker ps -aq | wc -l)
scan_mounts "$data" >"$out/mounts-final.txt"
final_leaked=$(wc -l <"$out/mounts-final.txt")
log "survivors: $survivors_1/$survivors after restart 1, $survivors_2/$survivors after restart 2; removing them: ${#final_failed[@]} failed; docker ps -a: $final_ps left; $final_leaked mounts below $data at the end"
nsdetach doctor >"$out/doctor-final.txt" 2>&1
doctor_final=$?
log "nsdetach doctor at the end: exit $doctor_final"
cat "$out/doctor-final.txt"
journalctl -u docker --no-pager >"$out/docker-journal.txt" 2>&1

printf 'RESULT case=%s dockerd=%s removed=%s/%s busy_errors=%s dead=%s leaked_after_rm=%s survivors_restart1=%s/%s survivors_restart2=%s/%s final_failed=%s final_ps=%s final_leaked=%s restart1_ms=%s restart2_ms=%s doctor_after_rm=%s doctor_final=%s detach_runs=%s start_failures=%s\n' \
	"$name" "$(docker version -f '{{.Server.Version}}')" "$removed_ok" "$containers" "$busy" "$dead_rm" "$leaked_rm" \
	"$survivors_1" "$survivors" "$survivors_2" "$survivors" "${#final_failed[@]}" "$final_ps" "$final_leaked" \
	"${restart_ms[0]}" "${restart_ms[1]}" "$doctor_rm" "$doctor_final" "$detached_runs" "$start_failures" | tee "$out/result"
