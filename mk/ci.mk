# SPDX-License-Identifier: Apache-2.0

.PHONY: ci-test setup

setup: ## install Debian packages and Go modules (root)
	scripts/setup.sh

ci-test: ## the README's test command: unit tests with -race, then the privileged tier, the same data-plane tier on kernel 6.1 (QEMU), benchmarks once, and the Xen checks
	$(MAKE) test
	$(MAKE) test-priv
	$(MAKE) test-kernel61
	$(MAKE) bench
	$(MAKE) xen-check
