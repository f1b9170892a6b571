# SPDX-License-Identifier: Apache-2.0
# The product proof: a real VM survives the death of its host (owner: vm).

.PHONY: demo soak bench-vm test-vm

DEMO_FLAGS ?=
BENCH_VM_FLAGS ?=
SOAK_N ?= 100

demo: build assets ## (root) boot a guest, protect it, kill its host under load, report; timeline in out/demo-timeline.png
	$(GO) run ./testenv/demo -bin $(CURDIR)/$(BIN) -out out $(DEMO_FLAGS)

test-vm: build assets ## (root) the end-to-end failover tests (3 random-phase host kills, unsafe mode, partition, agent crash, backup return)
	RESILIRE_TEST_PRIVILEGED=1 RESILIRE_BIN=$(CURDIR)/$(BIN) $(GO) test -count=1 -timeout 10m -v -run 'TestE2E' ./testenv/hacluster/

soak: build assets ## (root) SOAK_N (default 100) random-phase host kills (memory-only, with the bank on its disk) and SOAK_N alternating deaths of both hosts with re-protection; every acknowledged write and transfer must survive
	RESILIRE_TEST_PRIVILEGED=1 RESILIRE_BIN=$(CURDIR)/$(BIN) RESILIRE_SOAK_N=$(SOAK_N) $(GO) test -count=1 -timeout 0 -v -run 'TestE2E(Disk)?HostKill$$|TestE2EAlternatingDeaths$$' ./testenv/hacluster/

bench-vm: build assets ## (root) guest throughput unprotected vs 25/50/100 ms epochs, pause, failover time, FGBI vs page bytes; dirty tracking hash vs uffd-wp at 128 MiB/1 GiB, 50/10 ms (BENCH_VM_FLAGS=-rows dirty)
	$(GO) run ./testenv/demo/benchvm -bin $(CURDIR)/$(BIN) $(BENCH_VM_FLAGS)
