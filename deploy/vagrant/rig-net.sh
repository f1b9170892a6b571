#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
# Finds the service-network NIC (the one holding 192.168.57.x, or already a
# port of xenbr0) and makes the dom0's network with resilire-dom0-net
# (deploy/xen/dom0-net.sh, the nested rig's step). Vagrant configures the
# replication NIC itself. Idempotent; runs at every boot.
set -euo pipefail
if ip -4 addr show xenbr0 2>/dev/null | grep -q 'inet 192\.168\.57\.'; then
  exit 0
fi
nic=$(ip -4 -o addr show | awk '$4 ~ /^192\.168\.57\./ {print $2; exit}')
[ -n "$nic" ] || { echo "no 192.168.57.x address found" >&2; exit 1; }
exec /usr/local/sbin/resilire-dom0-net "$nic"
