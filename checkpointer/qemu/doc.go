// SPDX-License-Identifier: Apache-2.0

// Package qemu is the QEMU domain driver: it runs qemu-system-x86_64 with
// guest RAM in a shared file on /dev/shm and drives it over QMP.
//
// On the primary, Domain maps the RAM file read-only and implements
// checkpointer.Domain: Pause and Resume are QMP stop and cont; dirty pages
// are found by hashing every 4 KiB page of the mapping (xxh3, in parallel)
// against the hashes of the previous harvest, because QEMU exposes no
// dirty log to another process and the host has no soft-dirty bits; the
// device state is a migration with x-ignore-shared (RAM stays out of the
// stream) into a pipe passed with getfd.
//
// On the backup, Replica is a RAM file mapped read-write, and Standby is a
// warm QEMU started with "-incoming defer -S" on that file and the same
// command line (Config), so that failover is migrate-incoming from the
// last committed device state followed by cont.
//
// Measured recipe and pitfalls: research/qemu-rig.md.
package qemu
