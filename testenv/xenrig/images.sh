#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Builds what a nested Xen host needs, from Debian packages only, into OUT:
#   xen          the hypervisor as a plain multiboot ELF (QEMU's -kernel)
#   vmlinuz, initrd.img   the dom0 kernel and Debian's initramfs
#   dom0.ext4    the dom0 root: debootstrap minbase, a kernel, and the
#                packages every resilire dom0 gets (deploy/xen/dom0-packages.sh,
#                which the Vagrant rig runs too), whose /sbin/xeninit starts
#                the toolstack and serves the rig's command queue on the 9p
#                share (see rig.go)
# usage: images.sh OUT DOM0_PACKAGES_SH   (the Go rig calls it and caches OUT
# by the hash of both scripts)
set -euo pipefail
OUT=${1:?usage: images.sh OUT DOM0_PACKAGES_SH}
PKGS=$(realpath "${2:?usage: images.sh OUT DOM0_PACKAGES_SH}")
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
ROOT=$OUT/rootfs
mkdir -p "$OUT"
cd "$OUT"
# A maintainer script may leave /proc mounted in the chroot (seen with the
# device model's packages): unmount before packing, mkfs.ext4 -d would try
# to copy it, and on any exit.
unmount_chroot() {
  for m in dev/pts dev sys proc; do
    if mountpoint -q "$ROOT/$m" 2>/dev/null; then umount -l "$ROOT/$m"; fi
  done
  return 0
}
trap unmount_chroot EXIT

# 1. The hypervisor: /boot/xen-4.17-amd64.gz of the Debian package is a
#    gzipped ELF with a multiboot header; QEMU's loader needs it plain.
if [ ! -s xen ]; then
  rm -rf hvdeb && mkdir hvdeb
  (cd hvdeb && apt-get download -q xen-hypervisor-4.17-amd64)
  dpkg-deb -x hvdeb/xen-hypervisor-4.17-amd64_*.deb hvdeb/x
  zcat hvdeb/x/boot/xen-4.17-amd64.gz > xen.tmp && mv xen.tmp xen
  rm -rf hvdeb
fi

# 2. The dom0 root filesystem. xen-utils-4.17 matches the libxen-dev the
#    resilire binary is linked against on the build host. The packages are
#    the deployment's (deploy/xen/dom0-packages.sh), plus what this image
#    boots and is packed with.
if [ ! -f "$ROOT/.done" ]; then
  rm -rf "$ROOT"
  debootstrap --variant=minbase bookworm "$ROOT" "$MIRROR"
  printf 'deb %s bookworm main\n' "$MIRROR" > "$ROOT/etc/apt/sources.list"
  # no daemon may start inside the chroot
  printf '#!/bin/sh\nexit 101\n' > "$ROOT/usr/sbin/policy-rc.d"
  chmod +x "$ROOT/usr/sbin/policy-rc.d"
  chroot "$ROOT" apt-get update -q
  cp "$PKGS" "$ROOT/tmp/dom0-packages.sh"
  chroot "$ROOT" sh /tmp/dom0-packages.sh linux-image-amd64 initramfs-tools util-linux e2fsprogs
  rm "$ROOT/tmp/dom0-packages.sh"
  chroot "$ROOT" apt-get clean
  touch "$ROOT/.done"
fi

# dom0's init: no systemd. It mounts the usual file systems, starts Xen's
# toolstack daemons with Debian's own init script, mounts the rig's 9p
# share (the rig then runs deploy/xen/dom0-net.sh, which loads the
# backends and makes the bridge, as on any dom0) and then serves its
# command queue: for each /share/q/N.cmd it runs the script and writes
# N.out (stdout and stderr) and then N.rc. Nothing is typed on the console.
cat > "$ROOT/sbin/xeninit" <<'INIT'
#!/bin/sh
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
mount -t proc proc /proc; mount -t sysfs sys /sys
mount -t devtmpfs dev /dev 2>/dev/null; mkdir -p /dev/pts /dev/shm
mount -t devpts devpts /dev/pts; mount -t tmpfs tmpfs /dev/shm
mount -t tmpfs tmpfs /run; mount -t tmpfs tmpfs /tmp
mount -t bpf bpf /sys/fs/bpf 2>/dev/null
mount -o remount,rw /
hostname "${RIG_HOST:-xen}"; ip link set lo up
for m in 9pnet_virtio 9p bridge tun; do modprobe $m 2>/dev/null; done
mkdir -p /var/log/xen /var/lib/xen /run/xen /run/lock
/etc/init.d/xen start
mkdir -p /share
mount -t 9p -o trans=virtio,version=9p2000.L,cache=none share /share || echo "XENINIT: no share"
echo "XENINIT: ready $(cut -d' ' -f1 /proc/uptime)"
mkdir -p /share/q
while :; do
  for c in /share/q/*.cmd; do
    [ -e "$c" ] || continue
    n=${c%.cmd}
    mv "$c" "$n.run" || continue
    ( sh "$n.run" > "$n.out" 2>&1; echo $? > "$n.rc.tmp"; mv "$n.rc.tmp" "$n.rc" ) </dev/null &
  done
  sleep 0.1
done
INIT
chmod +x "$ROOT/sbin/xeninit"

cp "$ROOT"/boot/vmlinuz-* vmlinuz
cp "$ROOT"/boot/initrd.img-* initrd.img
unmount_chroot
rm -f dom0.ext4.tmp
mkfs.ext4 -q -L dom0root -d "$ROOT" dom0.ext4.tmp 2G
mv dom0.ext4.tmp dom0.ext4
