#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# Installs the Debian 12 packages a resilire dom0 runs on: Xen 4.17's
# toolstack (xl, xenstore, xenconsoled), the kernel's NBD client (a
# protected guest's disk: deploy/xen/block-resilire), the HVM device model
# (only so that protect can be shown to refuse an HVM guest that uses it),
# and the tools the agents and deploy/xen/dom0-net.sh call. The nested rig
# (testenv/xenrig/images.sh) runs this script in its dom0's chroot; the
# Vagrant rig (deploy/vagrant/dom0.sh) runs it on each dom0. Each adds only
# what its boot needs (the rig: a kernel and initramfs; Vagrant:
# xen-system-amd64, which puts the hypervisor in GRUB).
set -eu
export DEBIAN_FRONTEND=noninteractive
apt-get install -y -q --no-install-recommends \
  xen-utils-4.17 xen-utils-common xenstore-utils nbd-client \
  qemu-system-xen seabios \
  iproute2 kmod procps busybox "$@"
