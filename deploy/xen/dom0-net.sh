#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# A resilire dom0's network, as both rigs set it up (the nested rig in
# testenv/xenrig, the Vagrant rig at every boot):
#   - the Xen backends loaded (netback for the guest's vif, blkback), and
#     the kernel's NBD client for a guest's disk (block-resilire: loaded
#     here, as the agents' unit may not load modules);
#   - bridge xenbr0 with SERVICE_NIC as a port: the guest's vif joins it
#     (the xl config names the bridge); an IPv4 address SERVICE_NIC held
#     moves to the bridge;
#   - REPL_NIC, the replication link between the dom0s, given REPL_CIDR
#     (when both are given).
# usage: dom0-net.sh SERVICE_NIC [REPL_NIC REPL_CIDR]     Idempotent.
set -eu
svc=${1:?usage: dom0-net.sh SERVICE_NIC [REPL_NIC REPL_CIDR]}
rep=${2:-} repcidr=${3:-}
for m in xen-netback xen-blkback bridge nbd; do modprobe "$m" 2>/dev/null || true; done
ip link show "$svc" >/dev/null || { echo "dom0-net: no interface $svc" >&2; exit 1; }
if ! ip link show xenbr0 >/dev/null 2>&1; then
  ip link add xenbr0 type bridge
fi
ip link set xenbr0 type bridge stp_state 0 forward_delay 0
addr=$(ip -4 -o addr show dev "$svc" | awk '{print $4; exit}')
ip link set "$svc" master xenbr0
ip link set "$svc" up
if [ -n "$addr" ]; then
  ip addr del "$addr" dev "$svc"
  ip addr replace "$addr" dev xenbr0
fi
ip link set xenbr0 up
if [ -n "$rep" ]; then
  [ -n "$repcidr" ] || { echo "dom0-net: $rep needs an address (REPL_CIDR)" >&2; exit 1; }
  ip addr replace "$repcidr" dev "$rep"
  ip link set "$rep" up
fi
