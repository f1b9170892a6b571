# SPDX-License-Identifier: Apache-2.0

.PHONY: ci-test setup

setup: ## install Debian packages and Go modules (root)
	scripts/setup.sh

ci-test: ## the README's test command: unit tests with -race, then the privileged tier, benchmarks once, the Xen checks and the nested Xen smoke, then the data-plane tier again on kernel 6.1 (QEMU)
	$(MAKE) test
	$(MAKE) test-priv
	$(MAKE) bench
	$(MAKE) xen-check
	$(MAKE) xen-smoke-ci
	$(MAKE) test-kernel61
