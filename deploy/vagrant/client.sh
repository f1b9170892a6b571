#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
# The client VM: a watcher that increments a counter in the guest's kv
# store over one TCP connection, kept across the failover.
set -euo pipefail
cat > /usr/local/bin/rig-watch <<'W'
#!/bin/bash
# Sends "INCR n" to the guest's kv store (192.168.57.50:7000) every 100 ms
# on one TCP connection and prints each reply. Output commit means a reply
# the client saw is never rolled back: a number <= the last one seen is a
# bug. A dropped connection is reported and reopened: with resilire it
# survives the failover.
last=0
ts() { date +%T.%N | cut -c1-12; }
while :; do
  if ! { exec 3<>/dev/tcp/192.168.57.50/7000; } 2>/dev/null; then echo "$(ts) no connection"; sleep 1; continue; fi
  echo "$(ts) connected"
  while echo "INCR n" >&3 && read -r -t 60 n <&3; do
    n=${n%$'\r'}
    case "$n" in ''|*[!0-9]*) echo "$(ts) bad reply: $n"; break ;; esac
    if [ "$n" -le "$last" ]; then echo "$(ts) ROLLBACK: got $n after $last"; else echo "$(ts) $n"; last=$n; fi
    sleep 0.1
  done
  echo "$(ts) connection lost"
  exec 3>&-
  sleep 1
done
W
chmod 0755 /usr/local/bin/rig-watch
