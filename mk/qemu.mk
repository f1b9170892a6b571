# SPDX-License-Identifier: Apache-2.0
# Test guest and QEMU driver (owner: qemu).

.PHONY: assets clean-assets test-qemu

assets: ## build the test guest (Debian cloud kernel + Go /init initramfs) into testenv/assets/; cached
	$(GO) run ./testenv/guest/mkguest -dir testenv/assets

clean-assets: ## remove the cached test guest
	rm -rf testenv/assets

test-qemu: assets ## boot the guest, checkpoint it, kill the primary and fail over to the warm standby (root)
	RESILIRE_TEST_PRIVILEGED=1 $(GO) test -count=1 -timeout 5m -v -run 'TestFailover|TestRig' ./checkpointer/qemu/ ./testenv/
