#!/usr/bin/env bash
# build-image.sh — the Debian guest of `make vm-e2e`: a root filesystem built by mmdebstrap from
# the host's own Debian mirror (the sources apt is configured with), with systemd as PID 1,
# Debian's docker.io, containerd, runc, busybox-static and kernel; written to an ext4 image, next
# to the kernel and initrd for qemu's direct kernel boot.
#
# usage: build-image.sh OUTDIR
#
# OUTDIR gets rootfs.img, vmlinuz, initrd.img and stamp. The image is rebuilt only when the
# package list, guest/customize.sh, initramfs.sh, nsdetach-vm.service or the host's apt sources changed
# (the stamp holds their hash), so a warm `make vm-e2e` skips this step.
set -euo pipefail

die() {
	printf 'vm-image: %s\n' "$*" >&2
	exit 3
}
log() { printf 'vm-image: %s\n' "$*" >&2; }

(($# == 1)) || { sed -n '7p' "${BASH_SOURCE[0]}" | sed 's/^# //' >&2; exit 2; }
[[ $(id -u) -eq 0 ]] || die "run as root: mmdebstrap needs it to build a root filesystem with device nodes and owners"
out=$(realpath -m "$1")
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

# The host's Debian sources, in the form apt reads them; the guest is built from the same mirror
# and suite, so it needs nothing the host could not fetch.
sources=()
for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources; do
	[[ -f $f ]] && grep -Eq '^[[:space:]]*(deb[[:space:]]|Types:.*\bdeb\b)' "$f" && grep -q 'debian' "$f" && sources+=("$f")
done
((${#sources[@]})) || die "no Debian apt sources under /etc/apt to build the guest from"
# shellcheck disable=SC1091 # the host's
suite=$(. /etc/os-release && echo "${VERSION_CODENAME:?}")

packages=systemd,systemd-sysv,udev,dbus,kmod,procps,util-linux,iproute2,e2fsprogs,linux-image-amd64,initramfs-tools,docker.io,containerd,runc,busybox-static
# What goes into the image; the scenario scripts under guest/ are shared in at boot, not built in.
# Bump image_version when a change here must rebuild the image.
image_version=1
stamp=$( (cat "${sources[@]}" "$here/guest/customize.sh" "$here/guest/initramfs.sh" "$here/guest/nsdetach-vm.service"; echo "$image_version $suite $packages") |
	sha256sum | cut -d' ' -f1)
if [[ -f $out/stamp && $(<"$out/stamp") == "$stamp" && -s $out/rootfs.img && -s $out/vmlinuz && -s $out/initrd.img ]]; then
	log "cached image in $out is current"
	exit 0
fi

missing=()
for p in mmdebstrap e2fsprogs; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if ((${#missing[@]})); then
	log "installing ${missing[*]}"
	DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" >&2 || die "apt-get install ${missing[*]} failed"
fi

start=$SECONDS
mkdir -p "$out"
work=$(mktemp -d "$out/build.XXXXXX")
trap 'rm -rf --one-file-system "$work"' EXIT
rootfs=$work/rootfs

log "mmdebstrap $suite from ${sources[*]} into $rootfs"
# minbase plus what the scenario uses; no recommends, no docs: the image stays small.
# The system's python3 for mmdebstrap's helpers, not a version manager's shim found first in PATH.
PATH=/usr/sbin:/usr/bin:/sbin:/bin mmdebstrap --mode=root --variant=minbase --include="$packages" \
	--dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/doc/*' \
	--dpkgopt='path-exclude=/usr/share/locale/*' --dpkgopt='path-exclude=/usr/share/info/*' \
	--essential-hook="$here/guest/initramfs.sh \"\$1\"" \
	--customize-hook="$here/guest/customize.sh \"\$1\" $here/guest" \
	"$suite" "$rootfs" "${sources[@]}" >&2 || die "mmdebstrap failed"

kernel=$(find "$rootfs/boot" -maxdepth 1 -name 'vmlinuz-*' | sort -V | tail -n1)
initrd=$(find "$rootfs/boot" -maxdepth 1 -name 'initrd.img-*' | sort -V | tail -n1)
[[ -n $kernel && -n $initrd ]] || die "the guest has no kernel or initrd under /boot"
cp "$kernel" "$work/vmlinuz"
cp "$initrd" "$work/initrd.img"

# Room for the containers' layers and the logs; the file is sparse.
size_mb=$(($(du -sm "$rootfs" | cut -f1) + 1536))
mkfs.ext4 -q -F -L nsdetach-vm -d "$rootfs" "$work/rootfs.img" "${size_mb}M" || die "mkfs.ext4 failed"
mv "$work/rootfs.img" "$work/vmlinuz" "$work/initrd.img" "$out/"
echo "$stamp" >"$out/stamp"
log "built $out/rootfs.img (${size_mb} MB, $(du -sm "$out/rootfs.img" | cut -f1) MB used), kernel $(basename "$kernel") in $((SECONDS - start)) s"
