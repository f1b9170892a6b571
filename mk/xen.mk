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

xen-check: xen-build xen-verify ## build+vet with -tags xen, then the Xen tests including Xen's own stream verifier

xen-fuzz: ## fuzz the xen state-blob decoder for 30s
	$(GO) test -run '^$$' -fuzz FuzzDecodeState -fuzztime 30s ./checkpointer/xen/
