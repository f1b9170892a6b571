# SPDX-License-Identifier: Apache-2.0
# FGBI codec: benchmark on recorded traces, fuzzing.

CODEC_TRACES = $(sort $(patsubst %/trace.rtr,%,$(wildcard traces/*/trace.rtr checkpointer/trace/testdata/*/trace.rtr)))
CODEC_BLOCK ?= 64
CODEC_REPEAT ?= 3
FUZZTIME ?= 30s

.PHONY: bench-codec fuzz-codec

bench-codec: ## FGBI vs Remus/Xen/XBZRLE/S2/zstd on every trace in traces/ (make traces) and checkpointer/trace/testdata/
	@test -n "$(CODEC_TRACES)" || { echo "no traces: run make traces, or add fixtures under checkpointer/trace/testdata/"; exit 1; }
	$(GO) run ./testenv/benchcodec --block $(CODEC_BLOCK) --repeat $(CODEC_REPEAT) $(foreach t,$(CODEC_TRACES),--trace $(t))

fuzz-codec: ## fuzz the FGBI decoder and round trip for FUZZTIME each
	$(GO) test ./checkpointer/fgbi/ -run '^$$' -fuzz '^FuzzDecode$$' -fuzztime $(FUZZTIME)
	$(GO) test ./checkpointer/fgbi/ -run '^$$' -fuzz '^FuzzRoundTrip$$' -fuzztime $(FUZZTIME)
