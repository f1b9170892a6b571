# SPDX-License-Identifier: Apache-2.0
# Data plane (bpf/, dataplane/) targets.

.PHONY: test-dataplane fuzz-dataplane bench-dataplane-bpf

test-dataplane: ## privileged data-plane tests only (root): BPF unit, netns integration, CLI
	RESILIRE_TEST_PRIVILEGED=1 $(GO) test -count=1 -timeout 10m ./bpf/ ./dataplane/ ./testenv/ ./cli/

fuzz-dataplane: ## fuzz the ring-record parser (netbuf uses it) and the input-log checksum completion, 60 s each
	$(GO) test ./dataplane/ -run '^$$' -fuzz '^FuzzParseRecord$$' -fuzztime 60s
	$(GO) test ./dataplane/ -run '^$$' -fuzz '^FuzzCompleteChecksum$$' -fuzztime 60s

bench-dataplane-bpf: ## in-kernel cost per frame of each capture verdict (root; BPF_PROG_TEST_RUN)
	$(GO) test ./dataplane/ -run '^$$' -bench Capture -benchtime 200000x
