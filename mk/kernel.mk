# SPDX-License-Identifier: Apache-2.0
# Kernel matrix: the privileged data-plane tier on other kernels, in a QEMU VM.

.PHONY: test-kernel61

KERNELVM_FLAGS ?=

test-kernel61: ## (root) the data-plane tier (bpf, dataplane, netbuf, cli input-log/inject) in a QEMU TCG VM on Debian 12's 6.1 kernel
	$(GO) run ./testenv/kernelmatrix -timeout 15m $(KERNELVM_FLAGS)
