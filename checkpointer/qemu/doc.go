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
// stream) into a pipe passed with getfd. Pause starts that migration at
// once, so it runs in QEMU while the RAM is hashed here.
//
// On the backup, Replica is a RAM file mapped read-write, and Standby is a
// warm QEMU started with "-incoming defer -S" on that file and the same
// command line (Config.ForHost), so that failover is migrate-incoming from
// the last committed device state followed by cont.
//
// The sequence an engine runs (checkpointer/qemu/failover_test.go does it
// by hand):
//
//	primary: vm := Start(cfg, false); vm.WaitSerial(...); d := NewDomain(vm)
//	initial: d.Pause; d.EnableDirtyLog; d.ReadPages(every page); d.SaveState; d.Resume
//	         (all in one pause, so the hash baseline equals what is copied)
//	backup:  r := CreateReplica(path, size); copy the initial pages into r.Memory();
//	         sb := StartStandby(cfg.ForHost(..., r.Path(), ...))
//	epoch:   d.Pause; d.HarvestDirty; d.ReadPages; d.SaveState; d.Resume;
//	         ship; the backup stages the pages and applies them to r.Memory()
//	         only once the whole checkpoint arrived, keeps the state, acks
//	failover: sb.Activate(last committed state)
//
// Measured recipe and pitfalls: research/qemu-rig.md.
package qemu
