#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
# Rig fencing: succeed only when the primary's copy of the guest cannot emit
# output. Usage: resilire-fence <primary-address> <domain>
# 1. Reachable primary: destroy its copy of the guest over ssh.
# 2. Unreachable on the replication network AND the guest's service address
#    silent: in the rig that means the primary VM is powered off
#    (`vagrant halt -f xen1`). Production must use a real fence instead
#    (IPMI/Redfish power-off, a PDU, or the cloud's API): a partitioned
#    but running primary passes test 2.
set -u
peer=$1 dom=$2
if timeout 5 ssh -o BatchMode=yes -o ConnectTimeout=3 -o StrictHostKeyChecking=no "root@$peer" \
    "xl destroy $dom 2>/dev/null; ! xl list $dom >/dev/null 2>&1"; then
  exit 0
fi
if ping -c 2 -W 1 "$peer" >/dev/null 2>&1; then
  echo "fence: $peer answers ping but ssh failed: refusing" >&2; exit 1
fi
if ping -c 2 -W 1 192.168.57.50 >/dev/null 2>&1; then
  echo "fence: guest address still answers: refusing" >&2; exit 1
fi
exit 0
