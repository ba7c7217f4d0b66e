# shellcheck shell=bash
# mounts.sh — a library that run.sh and the vm-e2e guest (integration/vm/guest/main.sh) source:
# what is mounted below a docker data root, in every mount namespace, as the tests see it from
# /proc. vm-e2e.sh copies it into the guest's share next to main.sh.

# scan_mounts DATA prints "namespace pid mountpoint fstype upperdir comm" per mount below the
# data root DATA, once per mount namespace (read through the first process found in it): by mount
# point, or for overlay by upperdir ("-" when none), which keeps the host path whatever the
# holder's root is. DATA itself is left out: dockerd bind-mounts it onto itself.
scan_mounts() {
	local p ns seen=" "
	for p in /proc/[0-9]*; do
		ns=$(readlink "$p/ns/mnt" 2>/dev/null) || continue
		[[ $seen == *" $ns "* ]] && continue
		seen+="$ns "
		awk -v ns="$ns" -v pid="${p#/proc/}" -v comm="$(cat "$p/comm" 2>/dev/null)" -v root="$1/" '
			{
				for (i = 7; $i != "-"; i++) {}
				upper = "-"
				if (match("," $(i + 3) ",", /,upperdir=[^,]*,/))
					upper = substr("," $(i + 3) ",", RSTART + 10, RLENGTH - 11)
				if ($5 "/" != root && (index($5 "/", root) == 1 || index(upper "/", root) == 1))
					print ns, pid, $5, $(i + 1), upper, comm
			}' "$p/mountinfo" 2>/dev/null || true
	done
}

# owned_by PREFIX... reads scan_mounts lines and prints those whose mount point or upperdir is one
# of the PREFIXes or below it: the mounts of one or more containers.
owned_by() {
	awk -v prefixes="$*" '
		BEGIN { n = split(prefixes, pre, " ") }
		{
			for (j = 1; j <= n; j++)
				if (index($3 "/", pre[j] "/") == 1 || index($5 "/", pre[j] "/") == 1) { print; next }
		}'
}
