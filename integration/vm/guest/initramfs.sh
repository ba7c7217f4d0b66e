#!/usr/bin/env bash
# initramfs.sh ROOTFS — mmdebstrap's essential hook for the vm-e2e guest (runs on the host, before
# the kernel is installed): an initrd with only what qemu's direct boot needs to mount the root
# filesystem. Debian's default (MODULES=most) copies some 750 modules, which takes a quarter of an
# hour on a loaded 2-core machine, twice (the kernel's postinst, then initramfs-tools' trigger).
set -euo pipefail
root=$1
mkdir -p "$root/etc/initramfs-tools/conf.d" "$root/etc/initramfs-tools/hooks"
echo MODULES=list >"$root/etc/initramfs-tools/conf.d/nsdetach-vm.conf"
cat >"$root/etc/initramfs-tools/hooks/nsdetach-vm" <<'HOOK'
#!/bin/sh
# The root disk: virtio on PCI, ext4.
[ "$1" = prereqs ] && exit 0
. /usr/share/initramfs-tools/hook-functions
manual_add_modules virtio_pci virtio_blk ext4
HOOK
chmod 0755 "$root/etc/initramfs-tools/hooks/nsdetach-vm"
