# SPDX-License-Identifier: Apache-2.0
# Output-commit buffer (netbuf) targets.

.PHONY: bench-dataplane fuzz-netbuf

bench-dataplane: ## data-plane table: added latency, TCP buffered/unbuffered, 64-byte release rate (root, ~1 min)
	$(GO) test -count=1 -run '^$$' -bench '^BenchmarkDataplane$$' -benchtime 1x -timeout 5m ./netbuf/

fuzz-netbuf: ## fuzz the virtio-net header builder on parsed ring records for 60 s (the parser: make fuzz-dataplane)
	$(GO) test -run '^$$' -fuzz '^FuzzBuildVnetHdr$$' -fuzztime 60s ./netbuf/
