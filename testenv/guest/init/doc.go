// SPDX-License-Identifier: Apache-2.0

// Command init is the guest's PID 1: it mounts the pseudo file systems,
// loads the virtio modules listed in /modules.order, configures eth0 from
// guest.ip= on the kernel command line, and serves the kv store on :7000.
// It prints "SERVER READY" on the console once the listener is up. With
// guest.disk=files or guest.disk=bank it mounts /dev/vda (/dev/xvda as a Xen domU) on /data and runs
// the disk workload: the file writer (testenv/guest/diskload), or the bank
// (testenv/guest/bank) on :7002, "BANK READY" printed before "SERVER READY".
// Any failure is printed and powers the guest off, so QEMU (-no-reboot)
// exits instead of hanging a test.
//
// Built static (CGO_ENABLED=0) by testenv/guest.Build.
package main
