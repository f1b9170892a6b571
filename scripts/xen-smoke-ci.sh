#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# The nested Xen smoke as CI runs it (make xen-smoke-ci): one real Xen 4.17
# host under QEMU TCG, the driver's real tests in its dom0 (epochs by
# suspend and fast resume, the exact dirty log, a failing and a working
# xl restore, a restored guest that runs and answers, PV and HVM refused).
# Under TCG's emulation of SVM a guest now and then triple-faults with
# nothing of ours involved (docs/xen.md, "Known problem"): a run whose
# hypervisor log shows that is retried once on fresh hosts. Any other
# failure, or a second crash, fails.
set -euo pipefail
cd "$(dirname "$0")/.."
log=$(mktemp)
trap 'rm -f "$log"' EXIT
for attempt in 1 2; do
  if RESILIRE_TEST_PRIVILEGED=1 "${GO:-go}" test -count=1 -timeout 20m -v -run 'TestXenDriverOnRealXen$' ./testenv/xenrig/ 2>&1 | tee "$log"; then
    exit 0
  fi
  if ! grep -q "Triple fault" "$log"; then
    echo "xen-smoke-ci: failed (not a platform crash)" >&2
    exit 1
  fi
  echo "xen-smoke-ci: attempt $attempt: the nested platform crashed the guest (Triple fault in the hypervisor's log)" >&2
done
exit 1
