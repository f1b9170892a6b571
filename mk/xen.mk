# SPDX-License-Identifier: Apache-2.0
# Xen driver checks. Needs libxen-dev (cgo, -tags xen) and, for the stream
# verifier tests, xen-utils-4.17 (verify-stream-v2 and its Python modules).

.PHONY: xen-check xen-build xen-verify xen-fuzz

XEN_VERIFIER ?= /usr/lib/xen-4.17/bin/verify-stream-v2

xen-build: ## build and vet everything with -tags xen (links libxenctrl/libxenforeignmemory)
	$(GO) build -tags xen ./...
	$(GO) vet -tags xen ./...
	$(GO) test -tags xen -count=1 -run '^$$' ./checkpointer/xen/

xen-verify: ## Xen driver unit tests (fake libxc) and verify-stream-v2 acceptance/rejection tests; fails if the verifier is missing
	RESILIRE_TEST_PRIVILEGED=1 RESILIRE_XEN_VERIFIER=$(XEN_VERIFIER) \
		$(GO) test -tags xen -race -count=1 ./checkpointer/xen/

xen-check: xen-build xen-verify xen-rig-check ## build+vet with -tags xen, then the Xen tests including Xen's own stream verifier

xen-fuzz: ## fuzz the xen state-blob decoder for 30s
	$(GO) test -run '^$$' -fuzz FuzzDecodeState -fuzztime 30s ./checkpointer/xen/

.PHONY: xen-rig-check
xen-rig-check: ## syntax-check the Vagrant rig scripts, the dom0 provisioning scripts (deploy/xen) and the systemd unit; `vagrant validate` when vagrant is installed
	@for f in deploy/vagrant/*.sh deploy/xen/*.sh deploy/xen/block-resilire; do bash -n $$f || exit 1; done
	@d=$$(mktemp -d); cp deploy/resilire@.service $$d/ && ln -s resilire@.service $$d/resilire@guest.service; \
	  out=$$(systemd-analyze verify --man=no $$d/resilire@guest.service 2>&1 | grep -v 'resilire is not executable'); rm -rf $$d; \
	  if [ -n "$$out" ]; then echo "$$out"; exit 1; fi
	@if command -v vagrant >/dev/null; then d=$$(mktemp -d); VAGRANT_DOTFILE_PATH=$$d vagrant validate --ignore-provider; rc=$$?; rm -rf $$d; exit $$rc; \
	  else echo "vagrant not installed: skipped vagrant validate"; fi

.PHONY: xen-test xen-demo xen-smoke xen-smoke-ci
XENRIG_PKG := ./testenv/xenrig/

XENRIG_RUN ?= .

xen-test: ## (root) the nested Xen rig (real Xen 4.17 under QEMU TCG): the driver's real tests in a dom0, host kill (with and without a disk), agent crash, partition and the unsafe negative controls (~45 min; XENRIG_RUN=regexp picks tests)
	RESILIRE_TEST_PRIVILEGED=1 $(GO) test -count=1 -timeout 60m -v -run '$(XENRIG_RUN)' $(XENRIG_PKG)

xen-smoke: ## (root) the bounded slice of the nested Xen rig: boot a host, the driver's real tests in its dom0 (epochs, exact dirty log, restore that runs, PV refused) (~3.5 min, plus ~2.5 min for the first image build)
	RESILIRE_TEST_PRIVILEGED=1 $(GO) test -count=1 -timeout 20m -v -run 'TestXenDriverOnRealXen$$' $(XENRIG_PKG)

xen-smoke-ci: ## (root) xen-smoke then one two-host failover with a disk (TestXenDiskHostKill), as CI runs them: each retried once on fresh hosts if, and only if, the nested platform crashed the guest (a Triple fault in Xen's log)
	GO=$(GO) scripts/xen-smoke-ci.sh

xen-demo: ## (root) two nested Xen hosts: the protected PVH guest, with its disk and database, survives the kill of its host; make demo's report in out/xen-demo-report.txt, timeline in out/xen-demo-timeline.png
	RESILIRE_XEN_DEMO_OUT=$(CURDIR)/out RESILIRE_TEST_PRIVILEGED=1 $(GO) test -count=1 -timeout 30m -v -run 'TestXenDiskHostKill$$' $(XENRIG_PKG)
