#!/usr/bin/env bash
# customize.sh ROOTFS GUESTDIR — mmdebstrap's customize hook for the vm-e2e guest (runs on the
# host, after the packages are installed): mounts, console, the unit that runs the scenario, and
# nothing started at boot that the scenario does not start itself.
set -euo pipefail
root=$1
guest=$2

echo nsdetach-vm >"$root/etc/hostname"
# The host shares one directory read-write: the binaries and scripts in, the results out.
mkdir -p "$root/mnt/host"
cat >"$root/etc/fstab" <<'FSTAB'
/dev/vda / ext4 rw,errors=remount-ro 0 1
host /mnt/host 9p trans=virtio,version=9p2000.L,msize=1048576,nofail 0 0
FSTAB
chroot "$root" passwd -d root >/dev/null

# A root shell on the serial console, for `make vm-shell`.
mkdir -p "$root/etc/systemd/system/serial-getty@ttyS0.service.d"
cat >"$root/etc/systemd/system/serial-getty@ttyS0.service.d/autologin.conf" <<'UNIT'
[Service]
ExecStart=
ExecStart=-/sbin/agetty --autologin root --keep-baud 115200,57600,38400,9600 %I $TERM
UNIT

# dockerd must start its own containerd, as on the incident's hosts (17.x/18.x units had no
# --containerd): 20.10 uses containerd.service's socket whenever it exists. docker.service is
# started by the scenario, once its drop-ins are in place.
chroot "$root" systemctl mask containerd.service >/dev/null
chroot "$root" systemctl disable docker.service docker.socket >/dev/null 2>&1 || true
for u in apt-daily.timer apt-daily-upgrade.timer e2scrub_all.timer fstrim.timer systemd-timesyncd.service; do
	chroot "$root" systemctl mask "$u" >/dev/null 2>&1 || true
done

install -m 0644 "$guest/nsdetach-vm.service" "$root/etc/systemd/system/nsdetach-vm.service"
chroot "$root" systemctl enable nsdetach-vm.service >/dev/null
