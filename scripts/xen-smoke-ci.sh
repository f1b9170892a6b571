#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# The nested Xen smoke as CI runs it (make xen-smoke-ci), two tests in turn:
#   TestXenDriverOnRealXen  one real Xen 4.17 host under QEMU TCG, the
#                           driver's real tests in its dom0 (epochs by suspend
#                           and fast resume, the exact dirty log, a failing and
#                           a working xl restore, a restored guest that runs
#                           and answers, PV and HVM refused);
#   TestXenDiskHostKill     two hosts: the guest with its disk (served over
#                           NBD by the agents) created by protect on xen1 with
#                           the eBPF output commit, standby on xen2, xen1's
#                           QEMU killed under the kv and database clients'
#                           load, the guest restored on xen2 with no
#                           acknowledged write or transfer lost, and xen2's
#                           disk image checked (one failover).
# Under TCG's emulation of SVM a guest now and then triple-faults with
# nothing of ours involved (docs/xen.md, "Known problem"): a test whose
# hypervisor log shows that is retried once on fresh hosts. Any other
# failure, or a second crash, fails.
set -euo pipefail
cd "$(dirname "$0")/.."
log=$(mktemp)
trap 'rm -f "$log"' EXIT
run() { # run TEST TIMEOUT
  local attempt
  for attempt in 1 2; do
    if RESILIRE_TEST_PRIVILEGED=1 "${GO:-go}" test -count=1 -timeout "$2" -v -run "^$1\$" ./testenv/xenrig/ 2>&1 | tee "$log"; then
      return 0
    fi
    if ! grep -q "Triple fault" "$log"; then
      echo "xen-smoke-ci: $1 failed (not a platform crash)" >&2
      return 1
    fi
    echo "xen-smoke-ci: $1, attempt $attempt: the nested platform crashed the guest (Triple fault in the hypervisor's log)" >&2
  done
  return 1
}
run TestXenDriverOnRealXen 20m
run TestXenDiskHostKill 25m
