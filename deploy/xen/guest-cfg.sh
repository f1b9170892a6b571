#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# Prints the xl config of the protected test guest (testenv/guest: the kv
# store on TCP 7000) as a PVH domU, the same on both hosts because the
# backup restores it with this config:
#   - PVH: no device model (the Xen driver refuses PV and HVM guests);
#   - 128 MiB and one vCPU; GUEST_CPUS=N pins it to pCPU N (the nested rig
#     keeps it off dom0's pCPU: docs/xen.md, "Known problem");
#   - its vif on xenbr0 with the fixed name rsl-guest, the data plane's
#     port on either host;
#   - a crashed guest is kept for its console;
#   - GUEST_DISK_SOCKET=SOCK gives it a disk, xvda: the image the resilire
#     agent serves over NBD on SOCK (protect --disk-socket SOCK on the
#     primary, standby's on the backup), attached by the hotplug script
#     block-resilire; the guest then runs its database workload on it
#     (guest.disk=bank: SQLite on ext4).
# usage: guest-cfg.sh NAME DIR IP/PREFIX MAC    (DIR holds vmlinuz and
# initrd.cpio: `go run ./testenv/guest/mkguest -dir DIR` builds them)
set -eu
name=${1:?usage: guest-cfg.sh NAME DIR IP/PREFIX MAC} dir=${2:?} ip=${3:?} mac=${4:?}
disk="" work=""
if [ -n "${GUEST_DISK_SOCKET:-}" ]; then
  disk="disk = [ 'vdev=xvda,access=rw,format=raw,script=block-resilire,target=$GUEST_DISK_SOCKET' ]"
  work=" guest.disk=bank"
fi
cat <<CFG
name = "$name"
type = "pvh"
memory = 128
vcpus = 1
${GUEST_CPUS:+cpus = \"$GUEST_CPUS\"}
kernel = "$dir/vmlinuz"
ramdisk = "$dir/initrd.cpio"
extra = "console=hvc0 quiet panic=-1 guest.ip=$ip$work"
$disk
vif = [ 'bridge=xenbr0,vifname=rsl-guest,mac=$mac' ]
on_crash = "preserve"
on_reboot = "preserve"
CFG
