// SPDX-License-Identifier: Apache-2.0

// Package hacluster is the end-to-end scenario library: a real QEMU guest
// protected by the real agents on the two-host rig (testenv.NewRig).
//
// Setup builds the rig and the guest, attaches the eBPF data plane to the
// guest port on each host (host-a buffers output, host-b blocks it), starts
// `resilire standby` in host-b (warm standby QEMU, fence script) and the
// primary QEMU plus `resilire protect` in host-a, and returns once the
// first checkpoint is acknowledged. Faults: KillPrimaryHost,
// PartitionReplication, KillBackup / RestartBackup. The demo
// (testenv/demo) and the end-to-end tests use it.
package hacluster
