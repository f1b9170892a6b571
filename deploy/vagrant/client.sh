#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
# The client VM: curl and a watcher for the guest's request counter.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
apt-get install -y -q --no-install-recommends curl
cat > /usr/local/bin/rig-watch <<'W'
#!/bin/bash
# Polls the guest's counter every 100 ms. Output commit means a reply the
# client saw is never rolled back: a number <= the last one seen is a bug.
last=0
while :; do
  n=$(curl -s -m 2 http://192.168.57.50/cgi-bin/n) || { echo "$(date +%T.%N | cut -c1-12) no reply"; sleep 0.1; continue; }
  if [ "$n" -le "$last" ]; then echo "$(date +%T.%N | cut -c1-12) ROLLBACK: got $n after $last"; else echo "$(date +%T.%N | cut -c1-12) $n"; fi
  [ "$n" -gt "$last" ] && last=$n
  sleep 0.1
done
W
chmod 0755 /usr/local/bin/rig-watch
