#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
# Starts the rig: on xen1 (primary) the guest and `resilire protect`, on xen2
# (backup) `resilire standby`. Usage: start.sh primary|backup
set -euo pipefail
role=$1
port=7788
install -d -m 0700 /root/.ssh
# Rig key (made on the user's machine by the Vagrantfile): lets each host
# fence the other over the replication network.
install -m 0600 /tmp/rig_key /root/.ssh/id_ed25519
grep -qf /tmp/rig_key.pub /root/.ssh/authorized_keys 2>/dev/null || cat /tmp/rig_key.pub >> /root/.ssh/authorized_keys
install -m 0755 /vagrant/deploy/vagrant/fence.sh /usr/local/sbin/resilire-fence
case "$role" in
primary)
  # protect serves the guest's disk, so it creates the guest itself
  # (--start-vm: xl create -p /etc/resilire/guest.cfg, the hold attached on
  # its vif, vifname=rsl-guest, then unpause): no guest may run yet.
  if xl list guest >/dev/null 2>&1; then
    echo "guest already runs: destroy it (xl destroy guest) before starting protect" >&2
    exit 1
  fi
  args="protect --vm guest --domain xen --dataplane --backup 192.168.56.12:$port --interval 100ms --start-vm --disk-image /var/lib/resilire/guest.img --disk-socket /run/resilire/guest.nbd"
  ;;
backup)
  # The backup has no vif until failover restores the guest: no --dataplane.
  # The replica takes its size from the primary; the restore uses
  # /etc/resilire/guest.cfg, whose disk is this agent's served replica.
  args="standby --vm guest --domain xen --listen 192.168.56.12:$port --fence-cmd '/usr/local/sbin/resilire-fence 192.168.56.11 guest' --disk-image /var/lib/resilire/guest.img --disk-socket /run/resilire/guest.nbd"
  ;;
*) echo "usage: $0 primary|backup" >&2; exit 2 ;;
esac
echo "RESILIRE_ARGS=\"$args\"" > /etc/resilire/guest.env
systemctl enable resilire@guest.service
systemctl restart resilire@guest.service
systemctl --no-pager status resilire@guest.service || true
