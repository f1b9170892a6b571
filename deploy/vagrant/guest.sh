#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
# Builds the rig's guest, the one the nested rig protects: the project's
# test guest (testenv/guest: the pinned Debian kernel and a Go /init serving
# the kv store on TCP 7000 and a SQLite bank on TCP 7002) as a PVH domain at
# 192.168.57.50, with the xl config of deploy/xen/guest-cfg.sh and a 64 MiB
# ext4 disk the agents serve (/var/lib/resilire/guest.img through
# /run/resilire/guest.nbd and deploy/xen/block-resilire). Both hosts get
# identical files, because the backup restores the guest with the same
# config; the backup's disk is overwritten by the initial synchronisation.
# Runs after build.sh (Go and the source copy).
set -euo pipefail
dir=/var/lib/resilire/guest img=/var/lib/resilire/guest.img
install -d "$dir" /etc/resilire
cd /opt/resilire-src
/usr/local/go/bin/go run ./testenv/guest/mkguest -dir "$dir"
install -m 0755 deploy/xen/block-resilire /etc/xen/scripts/block-resilire
if [ ! -e "$img" ]; then
  truncate -s 64M "$img"
  mkfs.ext4 -q -F -b 4096 -E lazy_itable_init=0,lazy_journal_init=0 "$img"
fi
GUEST_DISK_SOCKET=/run/resilire/guest.nbd sh deploy/xen/guest-cfg.sh guest "$dir" 192.168.57.50/24 00:16:3e:52:53:01 > /etc/resilire/guest.cfg
cat /etc/resilire/guest.cfg
