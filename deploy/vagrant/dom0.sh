#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
# Turns a Debian 12 VM into a Xen dom0 (the reboot into Xen follows this
# script). Idempotent.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
# The packages of every resilire dom0 (the nested rig installs the same
# list), plus the hypervisor in GRUB and what the rig's scripts use.
sh /vagrant/deploy/xen/dom0-packages.sh xen-system-amd64 curl ca-certificates openssh-client rsync

# Boot Xen by default; keep 1 GiB for dom0 so the rest is free for guests.
cat > /etc/default/grub.d/resilire-xen.cfg <<'CFG'
XEN_OVERRIDE_GRUB_DEFAULT=1
GRUB_CMDLINE_XEN_DEFAULT="dom0_mem=1024M,max:1024M loglvl=all guest_loglvl=all"
CFG
update-grub

# Bridge xenbr0 on the service network (the NIC holding 192.168.57.x): the
# guest's vif joins it, the client reaches the guest through it. The bridge
# is made by deploy/xen/dom0-net.sh, as in the nested rig.
install -m 0755 /vagrant/deploy/xen/dom0-net.sh /usr/local/sbin/resilire-dom0-net
install -m 0755 /vagrant/deploy/vagrant/rig-net.sh /usr/local/sbin/resilire-rig-net
cat > /etc/systemd/system/resilire-rig-net.service <<'UNIT'
[Unit]
Description=Resilire rig: service bridge xenbr0
After=network-online.target
Wants=network-online.target
Before=xendomains.service resilire@guest.service

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/usr/local/sbin/resilire-rig-net

[Install]
WantedBy=multi-user.target
UNIT
systemctl daemon-reload
systemctl enable resilire-rig-net.service
