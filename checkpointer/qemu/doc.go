// SPDX-License-Identifier: Apache-2.0

// Package qemu is the QEMU domain driver: it runs qemu-system-x86_64 with
// guest RAM in a shared file on /dev/shm and drives it over QMP.
//
// On the primary, Domain maps the RAM file read-only and implements
// checkpointer.Domain: Pause and Resume are QMP stop and cont; the device
// state is a migration with x-ignore-shared (RAM stays out of the stream)
// into a pipe passed with getfd. Pause starts that migration at once, so
// it runs in QEMU while the dirty pages are harvested and copied here.
//
// # Dirty tracking (dirty.go)
//
// QEMU exposes no dirty log to another process and the host has no
// soft-dirty bits. Two mechanisms, chosen by DomainOptions.Tracking and
// reported by Domain.DirtyTracking (status, metrics, `resilire qemu
// probe`):
//
//   - uffd-wp, exact (Linux >= 6.7): a userfaultfd is created inside QEMU
//     by syscall injection over ptrace (inject.go: seize a non-main thread,
//     run the syscall from a "syscall" instruction of its vDSO, restart the
//     syscall it was interrupted in, restore, detach), taken into the agent
//     with pidfd_getfd and closed in QEMU (uffd.go). The agent registers
//     QEMU's guest-RAM mapping for write-protect in async mode (the kernel
//     resolves the faults itself: no reader thread), and each harvest is
//     one PAGEMAP_SCAN on /proc/PID/pagemap that returns the written pages
//     and re-protects them atomically (pagemapscan.go, uffdtracker.go).
//     The registration dies with the agent's fd: a restarted agent injects
//     again and the engine takes a fresh full baseline; if QEMU re-maps its
//     RAM the scan fails with EPERM and the tracker re-injects and reports
//     every page once. A second agent gets EBUSY and falls back.
//   - hash (ram.go), everywhere else: every 4 KiB page of the mapping is
//     hashed (xxh3, in parallel) against the previous harvest, time
//     proportional to guest RAM.
//
// auto (the default) uses uffd-wp unless the kernel lacks PAGEMAP_SCAN or
// async write-protect, ptrace or pidfd_getfd is refused, or the config has
// a writer a per-process write-protect cannot see (vhost-user backends and
// virtiofsd write through their own mappings; balloon and discard punch
// the file; in-kernel vhost is untested): then it hashes and says why.
// Memory: uffd-wp costs the agent a 96 KiB scan vector and nothing per
// page (the kernel keeps the protection in QEMU's page tables); hashing
// keeps 8 bytes per guest page.
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
