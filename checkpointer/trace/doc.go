// SPDX-License-Identifier: Apache-2.0

// Package trace records and replays page-granular dirty-memory traces of
// real processes, the input of the checkpoint codec's tests and benchmarks.
//
// # Model
//
// A trace is a sequence of epochs; between two of them the process runs
// Meta.IntervalMS milliseconds. At each epoch the recorder pauses the
// process (SIGSTOP or a cgroup freezer), reads its writable mappings
// (private and shared) with process_vm_readv, falling back to
// /proc/PID/mem, keeps the 4 KiB pages whose content differs from the copy
// it kept at the previous epoch, and resumes the process. Epoch 0 holds every
// page (the full image); later epochs hold only the pages that changed.
//
// # Flat page space
//
// Pages are numbered in one flat space, like a guest's physical frames. At
// the first epoch the writable mappings are laid out in ascending address
// order, each as one contiguous slot of page frame numbers. At every later
// epoch, any writable address range not yet covered by a slot (a new mmap,
// the heap growing) is appended as a new slot after the last one; in the
// epoch it first appears, every page of it is recorded, so "the epoch a slot
// appears holds its full image" mirrors epoch 0. A slot whose mapping has
// gone keeps its last content and is never reported again; an address range
// mapped again later falls into its old slot. So the space only grows, PFNs
// never move, and Meta.Pages is its final size. Meta.Mappings lists the
// slots (address range, first PFN, the mapping's name, the epoch it
// appeared). Pages that cannot be read (device mappings, a file mapping past
// its end of file) are left out and stay zero.
//
// # Recording
//
// Record traces one process (all its threads; not its children), started
// from a command or given by PID. SIGSTOP pauses it by default: the
// recorder sends the signal, then polls /proc/PID/task/*/stat until every
// thread is in state 'T'; SIGCONT resumes it. FreezeCgroup moves it into a
// cgroup of its own and uses the cgroup v2 freezer (or the v1 freezer
// controller), invisible to the process and its parent; on a hybrid host
// such as this project's, the v2 hierarchy at /sys/fs/cgroup/unified has
// cgroup.freeze even though it carries no controllers. Whatever happens,
// Record resumes the process before returning, and ends and reaps any
// process it started. The process runs Interval between two pauses (the
// pause itself and the writing are not counted), so an epoch holds Interval
// of the workload's dirtying; epochs are compressed and written on a
// separate goroutine. Being paused has effects a guest would not see: a
// stopped process's sleeping system calls are interrupted and restarted
// (the kernel then writes the remaining time back to user memory), and
// SIGSTOP notifies the parent; reading a page of shared memory that the
// process never touched allocates it (a private one maps the zero page).
// The pause is as long as reading every writable page takes: the kernel
// here lacks CONFIG_MEM_SOFT_DIRTY, so there is no cheaper way to learn
// which private pages were written.
//
// # Workloads and fixtures
//
// `make traces` runs scripts/traces.sh, which records redis-server under
// redis-benchmark, a PostgreSQL backend under pgbench, gcc's cc1 compiling a
// generated file, and an NPB-EP-like loop (workloads/ep.c) into the
// git-ignored traces/ folder. `make trace-fixtures` records the small
// configurations committed in testdata/redis, testdata/pgbench and
// testdata/ep, which tests and CI benchmarks read without any workload.
//
// # File format (version 1)
//
// A trace directory holds one file, trace.rtr. All integers are
// little-endian; every checksum is CRC-32C (Castagnoli).
//
//	file header, 16 bytes:
//	  0  [8]byte magic "RSLTRACE"
//	  8  u32     version (1)
//	  12 u32     CRC-32C of bytes 0..11
//	records, each a 32-byte header followed by its payload:
//	  0  u8      kind: 1 epoch, 2 meta
//	  1  [3]byte zero
//	  4  u32     seq: epoch number (0, 1, 2 ... in order), 0 for meta
//	  8  u32     count: pages in the epoch (0 for meta)
//	  12 u32     stored payload length in bytes
//	  16 u64     raw payload length in bytes (after decompression)
//	  24 u32     CRC-32C of the raw payload
//	  28 u32     CRC-32C of header bytes 0..27
//	footer, 24 bytes, last in the file:
//	  0  [8]byte magic "RSLTREND"
//	  8  u64     file offset of the meta record
//	  16 u32     number of epoch records
//	  20 u32     CRC-32C of footer bytes 0..19
//
// An epoch's raw payload is the PFN list (the first PFN, then the gaps to the
// next, as unsigned varints), followed by count*4096 bytes of page data in
// PFN order; it is stored zstd-compressed. The meta payload is the JSON
// encoding of Meta, stored raw, and comes after the last epoch. Open checks
// the header, the footer and the meta; Next checks each record's lengths
// against the meta's page count, its checksums, its sequence number and that
// its PFNs ascend within range, so a truncated or corrupted file gives an
// error wrapping ErrCorrupt (ErrVersion for an unknown version) and never a
// panic or an unbounded allocation.
package trace
