// SPDX-License-Identifier: Apache-2.0

// Package trace records and replays page-granular dirty-memory traces of
// real processes, the input of the checkpoint codec's tests and benchmarks.
//
// # Model
//
// A trace is a sequence of epochs taken every Meta.IntervalMS milliseconds.
// At each epoch the recorder pauses the process (SIGSTOP or a cgroup
// freezer), reads its writable mappings (private and shared) through
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
