# SPDX-License-Identifier: Apache-2.0
# VDEchp groups (issue 13): three QEMU guests on two primary hosts, every
# backup and the coordinator on a third.

.PHONY: group-test group-udp demo-group
GROUP_PKG := ./testenv/hacluster/

group-test: ## (root) the group scenarios (all in CI): primary host kills under the xbank workload over TCP and over UDP with their negative controls (no colour hold, no input replay), stop-the-world rounds, the backups' host killed (continue / block), coordinator restart and takeover by a standby coordinator, re-protection (~10 min)
	RESILIRE_TEST_PRIVILEGED=1 $(GO) test -count=1 -timeout 20m -v -run 'TestE2EGroup' $(GROUP_PKG)

group-udp: ## (root) the UDP group scenarios only (credits sent once): the in-transit replay and its negative control
	RESILIRE_TEST_PRIVILEGED=1 $(GO) test -count=1 -timeout 20m -v -run 'TestE2EGroup(UDPHostKill|UnsafeNoInputReplay)$$' $(GROUP_PKG)

demo-group: ## (root) VDEchp demo: VM-to-VM and client latency and VM-to-VM bulk throughput unprotected / every port held / stop-the-world / VDEchp (early commit too) side by side, with each guest's pause, then a host death under VDEchp as a timeline (~4 min)
	RESILIRE_TEST_PRIVILEGED=1 RESILIRE_DEMO_GROUP=1 $(GO) test -count=1 -timeout 30m -v -run 'TestGroupDemo$$' $(GROUP_PKG)
