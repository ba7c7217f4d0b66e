#!/usr/bin/env bash
# vm-e2e.sh — the incident and its remedies under real systemd: boots the Debian guest of
# build-image.sh with qemu (KVM when /dev/kvm is there, else TCG) once per case, each from the
# pristine image (qemu's -snapshot: nothing a case does reaches the image or the next case), and
# prints one table.
#
# usage: vm-e2e.sh --image DIR --bin DIR [--smoke | --shell | --report] [--cases "stock shared rejoin patched detach"]
#                  [--containers N] [--survivors K] [--timeout SECONDS] [--jobs J] [--out DIR]
#
# --image  the directory build-image.sh wrote (rootfs.img, vmlinuz, initrd.img)
# --bin    nsdetach, oldkernel and dockerd-patched (the patched engine of `make dockerd`)
# --smoke  boot once, start Debian's docker.service, run a shell, power off (what CI runs)
# --shell  boot to a root shell on this terminal (the serial console; ^A x quits qemu); the
#          binaries of --bin are in /mnt/host/bin
# --report boot nothing: judge the cases' results already in --out and print the table again
# --cases  which configurations of docker.service to play (integration/vm/guest/main.sh names them)
# --timeout  per boot; the guest is killed (by pid) and the case counted failed after it
# --jobs   how many guests run at once (default 1); each is its own qemu on its own snapshot, so
#          only the timings change (the restart times then include the other guests' load)
# Exit status: 0 every case came out as expected (stock: the incident; every remedy: clean), 1 a
# case did not, 2 usage, 3 the harness failed.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
usage() {
	sed -n '7,8p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2
	exit 2
}
die() {
	printf 'vm-e2e: %s\n' "$*" >&2
	exit 3
}
log() { printf 'vm-e2e: %s\n' "$*" >&2; }

image='' bin='' smoke=0 shell=0 report=0 cases="stock shared rejoin patched detach" containers=4 survivors=2 timeout=1800 jobs=1 out=''
while (($#)); do
	case $1 in
	--image) image=${2:?}; shift 2 ;;
	--bin) bin=${2:?}; shift 2 ;;
	--smoke) smoke=1; shift ;;
	--shell) shell=1; shift ;;
	--report) report=1; shift ;;
	--cases) cases=${2:?}; shift 2 ;;
	--containers) containers=${2:?}; shift 2 ;;
	--survivors) survivors=${2:?}; shift 2 ;;
	--timeout) timeout=${2:?}; shift 2 ;;
	--jobs) jobs=${2:?}; shift 2 ;;
	--out) out=${2:?}; shift 2 ;;
	-h | --help) usage ;;
	*) printf 'vm-e2e: unknown argument %s\n' "$1" >&2; usage ;;
	esac
done
[[ -n $image ]] || usage
((smoke || shell || report)) || [[ -n $bin ]] || usage
[[ $(id -u) -eq 0 ]] || die "run as root (qemu's 9p share writes the guest's files as their owners)"
[[ $containers =~ ^[1-9][0-9]*$ && $survivors =~ ^[1-9][0-9]*$ && $jobs =~ ^[1-9][0-9]*$ && $timeout =~ ^[1-9][0-9]*$ ]] || usage
for f in rootfs.img vmlinuz initrd.img; do
	[[ -s $image/$f ]] || die "no $image/$f: build the image first (integration/vm/build-image.sh $image)"
done
image=$(realpath "$image")
out=$(realpath -m "${out:-$image/../runs}")

if ! command -v qemu-system-x86_64 >/dev/null; then
	log "installing qemu-system-x86"
	DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends qemu-system-x86 >&2 ||
		die "apt-get install qemu-system-x86 failed"
fi
if [[ -r /dev/kvm && -w /dev/kvm ]]; then
	accel=(-accel kvm -cpu host)
else
	# No KVM (a VM without nested virtualisation): the same guest, emulated, several times slower.
	log "no usable /dev/kvm: booting with TCG emulation"
	accel=(-accel 'tcg,thread=multi' -cpu max)
fi

# The pristine image every boot starts from (-snapshot: writes go to a temporary file), Debian's
# kernel and initrd booted directly, no network.
qemu=("${accel[@]}" -m 2048 -smp 2 -machine q35 -no-reboot -nic none
	-kernel "$image/vmlinuz" -initrd "$image/initrd.img"
	-drive "file=$image/rootfs.img,format=raw,if=virtio,snapshot=on")
# Debian's kernel enables AppArmor; the image leaves out the apparmor package (a recommends of
# docker.io), without whose parser dockerd 20.10 refuses to run containers.
cmdline="root=/dev/vda rw console=ttyS0 panic=-1 apparmor=0"

# Every qemu this script starts is recorded in $out/NAME/qemu.pid (its pid and this script's) and
# killed on exit, however the script ends (a guest left running would hold 2 GB and a core on a
# shared machine); a guest of another run of this script with the same --out is left alone.
# shellcheck disable=SC2317 # run by the EXIT trap
kill_guests() {
	local f pid owner
	for f in "$out"/*/qemu.pid; do
		[[ -s $f ]] || continue
		read -r pid owner <"$f"
		[[ $owner == "$$" ]] || continue
		# Only our qemu: the pid still runs qemu-system-x86_64 with this case's console file.
		if [[ $(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null) == *"file:${f%/qemu.pid}/console.log"* ]]; then
			log "killing qemu (pid $pid) of ${f%/qemu.pid}"
			kill "$pid" 2>/dev/null || true
		fi
		rm -f "$f"
	done
}

# boot NAME REQUEST: one boot of the pristine image with a fresh share; the guest powers off when
# its request is done. Sets boot_s, and writes it to $out/NAME/seconds.
boot() {
	local name=$1 request=$2 dir=$out/$1 qpid rc t0=$SECONDS
	rm -rf "$dir"
	mkdir -p "$dir/share/out" "$dir/share/bin" "$dir/share/guest" "$dir/share/deploy"
	install -m 0755 "$here/guest/main.sh" "$dir/share/main.sh"
	install -m 0755 "$here/guest/dockerd-wrapper.sh" "$here/guest/dockerd-child.sh" "$dir/share/guest/"
	install -m 0644 "$repo/integration/e2e/mounts.sh" "$dir/share/guest/"
	cp "$repo"/deploy/systemd/docker.service.d/*.conf "$dir/share/deploy/"
	if [[ $request != smoke ]]; then
		install -m 0755 "$bin/nsdetach" "$bin/oldkernel" "$dir/share/bin/"
		[[ $name != patched ]] || install -m 0755 "$bin/dockerd-patched" "$dir/share/bin/"
	fi
	echo "$request" >"$dir/share/request"
	echo "$containers" >"$dir/share/containers"
	echo "$survivors" >"$dir/share/survivors"
	qemu-system-x86_64 "${qemu[@]}" -display none -monitor none -serial "file:$dir/console.log" \
		-append "$cmdline systemd.show_status=0 quiet" \
		-virtfs "local,path=$dir/share,mount_tag=host,security_model=passthrough,id=host" &
	qpid=$!
	echo "$qpid $$" >"$dir/qemu.pid"
	rc=0
	# The guest's own timeout is the case's; this one only ends a guest that hangs. By the clock:
	# on a loaded host a `sleep 1` lasts longer.
	while ((SECONDS - t0 < timeout)); do
		kill -0 "$qpid" 2>/dev/null || break
		sleep 1
	done
	if kill -0 "$qpid" 2>/dev/null; then
		log "$name: guest still running after $timeout s; killing qemu (pid $qpid)"
		kill "$qpid"
		wait "$qpid" || true
		rc=124
	else
		wait "$qpid" || rc=$?
	fi
	rm -f "$dir/qemu.pid"
	boot_s=$((SECONDS - t0))
	echo "$boot_s" >"$dir/seconds"
	log "$name: guest ran $boot_s s (qemu exit $rc); console in $dir/console.log, results in $dir/share/out"
}

# findings FILE: the checks nsdetach doctor reported as a warning or a problem, sorted, comma-separated.
findings() {
	{ grep -oE '^\[(PROBLEM|WARNING)\] [a-z-]+' "$1" 2>/dev/null || true; } | sed 's/^\[[A-Z]*\] //' | sort | paste -sd, -
}
# What the shared and rejoin cases install (guest/main.sh), which doctor must print in the stock case.
shared_dropin=/etc/systemd/system/docker.service.d/10-nsdetach-mountflags.conf
rejoin_line='ExecStart=/usr/local/bin/nsdetach rejoin -- /usr/sbin/dockerd -H fd:// --live-restore'

# result NAME KEY: a value of the case's RESULT line ("?" when the case produced none).
result() {
	local line
	line=$(grep -h '^RESULT ' "$out/$1/share/out/$1/result" 2>/dev/null | tail -n1)
	[[ -n $line ]] || { echo '?'; return; }
	tr ' ' '\n' <<<"$line" | awk -F= -v k="$2" '$1 == k { print $2; found = 1 } END { if (!found) print "?" }'
}

mkdir -p "$out"
trap kill_guests EXIT
trap 'exit 130' INT TERM
if ((shell)); then
	# No main.sh in the share: the guest's nsdetach-vm.service does not run, the console is a shell.
	dir=$out/shell
	rm -rf "$dir"
	mkdir -p "$dir/share"
	[[ -z $bin ]] || cp -r "$bin" "$dir/share/bin"
	exec qemu-system-x86_64 "${qemu[@]}" -nographic -append "$cmdline" \
		-virtfs "local,path=$dir/share,mount_tag=host,security_model=passthrough,id=host"
fi
if ((smoke)); then
	boot smoke smoke
	r=$(cat "$out/smoke/share/out/smoke/result" 2>/dev/null || true)
	[[ $r == OK* ]] || { tail -n 40 "$out/smoke/console.log" >&2; die "the guest did not boot to a working shell and docker.service (${r:-no result})"; }
	log "smoke: $r (guest booted, ran and powered off in $boot_s s)"
	exit 0
fi
if ((!report)); then
	[[ -x $bin/nsdetach && -x $bin/oldkernel ]] || die "no nsdetach or oldkernel in $bin"
	[[ " $cases " != *" patched "* || -x $bin/dockerd-patched ]] || die "no $bin/dockerd-patched for the patched case"
fi

# The guests, up to --jobs at a time; each boot is a background job of its own.
running=()
((report)) || for c in $cases; do
	while ((${#running[@]} >= jobs)); do
		wait -n || true
		still=()
		for p in "${running[@]}"; do kill -0 "$p" 2>/dev/null && still+=("$p"); done
		running=("${still[@]}")
	done
	boot "$c" "case $c" &
	running+=($!)
done
wait

status=0
declare -A seconds verdict
for c in $cases; do
	seconds[$c]=$(cat "$out/$c/seconds" 2>/dev/null || echo '?')
	removed=$(result "$c" removed) dead=$(result "$c" dead) leaked=$(result "$c" leaked_after_rm)
	fleaked=$(result "$c" final_leaked) s1=$(result "$c" survivors_restart1) s2=$(result "$c" survivors_restart2)
	ffailed=$(result "$c" final_failed) fps=$(result "$c" final_ps) busy=$(result "$c" busy_errors)
	doc=$out/$c/share/out/$c
	if grep -q '^FAILED' "$doc/result" 2>/dev/null || [[ ! -s $doc/result ]]; then
		# The guest could not play the case: that is no verdict on the remedy.
		verdict[$c]="guest failed: $(head -c 200 "$doc/result" 2>/dev/null || echo 'no result')"
		status=1
		continue
	fi
	if [[ $c == stock ]]; then
		# The incident, and doctor naming exactly its findings, with the fixes the other cases apply
		# (the rejoin drop-in's ExecStart= line as the rejoin case writes it).
		ok=1
		[[ $busy != '?' && $busy -gt 0 && $dead -gt 0 ]] || ok=0
		for fix in "$shared_dropin" 'MountFlags=shared' "$rejoin_line" "nsdetach detach --root /var/lib/docker --stale-only"; do
			grep -qF -- "$fix" "$doc/doctor-after-rm.txt" 2>/dev/null || { ok=0; log "stock: doctor did not print the fix '$fix'"; }
		done
		[[ $(findings "$doc/doctor-after-rm.txt") == 'leaks,live-restore,mount-namespace' ]] ||
			{ ok=0; log "stock: doctor's findings are '$(findings "$doc/doctor-after-rm.txt")', not leaks, live-restore and mount-namespace"; }
		[[ $(result "$c" doctor_after_rm) == 1 ]] || { ok=0; log "stock: doctor did not exit 1 in the broken state"; }
		((ok)) && verdict[$c]="incident reproduced" || verdict[$c]="INCIDENT NOT REPRODUCED"
	else
		ok=1
		[[ $removed == "$containers/$containers" && $dead == 0 && $leaked == 0 && $fleaked == 0 && $ffailed == 0 && $fps == 0 &&
			$s1 == "$survivors/$survivors" && $s2 == "$survivors/$survivors" ]] || ok=0
		# What each fix clears in doctor: the drop-ins every finding, after the removals and at the
		# end; the patched engine and the detach after the fact only the leaks (the unit still
		# gives dockerd a namespace of its own with live-restore, which doctor keeps reporting).
		case $c in
		shared | rejoin) want='' ;;
		*) want='live-restore,mount-namespace' ;;
		esac
		# After the removals those two may leave pinned copies of the survivors' mounts in dockerd
		# #1's namespace (a leaks warning, right); a stale leak is a problem either way.
		whens=final
		case $c in shared | rejoin) whens+=' after-rm' ;; esac
		for when in $whens; do
			got=$(findings "$doc/doctor-$when.txt")
			[[ -s $doc/doctor-$when.txt && $got == "$want" ]] || { ok=0; log "$c: doctor $when: findings '$got', want '$want'"; }
		done
		! grep -qF '[PROBLEM] leaks' "$doc/doctor-after-rm.txt" 2>/dev/null || { ok=0; log "$c: doctor found stale leaks after the removals"; }
		((ok)) && verdict[$c]=clean || verdict[$c]=NOT-CLEAN
	fi
	((ok)) || status=1
done

printf '\n| remedy | removals ok | Dead | leaked mounts (after rm / at end) | survivors (restart 1 / 2) | restart time (1 / 2) | doctor at end | guest run | verdict |\n'
printf '|---|---|---|---|---|---|---|---|---|\n'
for c in $cases; do
	case $c in
	stock) label='none (stock, the incident)' ;;
	shared) label='MountFlags=shared drop-in' ;;
	rejoin) label='rejoin drop-in' ;;
	patched) label="patched dockerd $(result "$c" dockerd)" ;;
	detach) label='detach --stale-only after the fact' ;;
	esac
	removed=$(result "$c" removed)
	[[ $(result "$c" detach_runs) == 0 || $(result "$c" detach_runs) == '?' ]] || removed+=" (after detach)"
	dfinal=$(result "$c" doctor_final)
	case $dfinal in 0) dfinal=clean ;; 1) dfinal="findings: $(findings "$out/$c/share/out/$c/doctor-final.txt")" ;; esac
	printf '| %s | %s | %s | %s / %s | %s / %s | %s / %s ms | %s | %s s | %s |\n' "$label" "$removed" "$(result "$c" dead)" \
		"$(result "$c" leaked_after_rm)" "$(result "$c" final_leaked)" "$(result "$c" survivors_restart1)" "$(result "$c" survivors_restart2)" \
		"$(result "$c" restart1_ms)" "$(result "$c" restart2_ms)" "$dfinal" "${seconds[$c]}" "${verdict[$c]}"
done
printf '\n(guest: %s, %s; %s containers removed and %s survivors per case; results under %s)\n' \
	"$(cat "$out"/*/share/out/*/guest.log 2>/dev/null | grep -m1 -o 'kernel [^ ,]*' || echo '?')" \
	"${accel[1]%%,*}" "$containers" "$survivors" "$out"
exit "$status"
