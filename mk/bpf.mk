# SPDX-License-Identifier: Apache-2.0
# eBPF C style (bpf/*.c, bpf/*.h; the vendored bpf/include is not ours).

CLANG_FORMAT ?= clang-format-14
BPF_SOURCES  := $(wildcard bpf/*.c bpf/*.h)

.PHONY: lint-bpf format-bpf

lint-bpf: ## check the eBPF C against .clang-format (clang-format-14, from make setup)
	$(CLANG_FORMAT) --dry-run -Werror $(BPF_SOURCES)

format-bpf: ## format the eBPF C in place (then make generate: the objects carry line info)
	$(CLANG_FORMAT) -i $(BPF_SOURCES)

# make lint also checks the eBPF C.
lint: lint-bpf
