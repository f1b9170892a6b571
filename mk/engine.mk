# SPDX-License-Identifier: Apache-2.0
# Replication engine: epoch-loop benchmark.

ENGINE_TRACE ?= $(firstword $(wildcard traces/redis checkpointer/trace/testdata/redis))
ENGINE_EPOCHS ?= 40

.PHONY: bench-engine

bench-engine: build ## epoch loop on loopback: pause p50/p99, bytes/s, ack latency, CPU/epoch at 25/50/100 ms (redis trace if recorded, else synthetic) and the 16 MiB pause
	$(BIN) bench engine --epochs $(ENGINE_EPOCHS) $(if $(ENGINE_TRACE),--trace $(ENGINE_TRACE))
