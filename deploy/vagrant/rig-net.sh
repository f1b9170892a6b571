#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
# Moves the service-network address (192.168.57.x) from its NIC to bridge
# xenbr0 with the NIC enslaved. Idempotent; runs at every boot.
set -euo pipefail
ip link show xenbr0 >/dev/null 2>&1 && ip -4 addr show xenbr0 | grep -q 'inet 192\.168\.57\.' && exit 0
nic=$(ip -4 -o addr show | awk '$4 ~ /^192\.168\.57\./ {print $2; exit}')
addr=$(ip -4 -o addr show | awk '$4 ~ /^192\.168\.57\./ {print $4; exit}')
[ -n "$nic" ] || { echo "no 192.168.57.x address found" >&2; exit 1; }
ip link add xenbr0 type bridge 2>/dev/null || true
ip link set xenbr0 type bridge stp_state 0 forward_delay 0
ip addr del "$addr" dev "$nic"
ip link set "$nic" master xenbr0
ip addr add "$addr" dev xenbr0
ip link set xenbr0 up
