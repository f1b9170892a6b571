// SPDX-License-Identifier: Apache-2.0

// Package fgbi is the FGBI checkpoint codec: it turns the dirty pages of one
// epoch into a compact, self-delimiting, checksummed checkpoint, and turns it
// back into replica memory on the backup.
//
// Encoding, per dirty page:
//
//   - Change detection per block (BlockSize, 64 B default): a page whose last
//     sent copy is in the shadow cache (the hot pages, XORCacheBytes) is
//     compared with it byte for byte, which is exact; any other page is
//     compared through a 32-bit xxh3 fingerprint per block recorded when the
//     block was last sent. Only changed blocks go out.
//   - Sharing: an all-zero block costs one run entry; a block whose content
//     the backup already holds (an earlier block of the same chunk, or a
//     block of a shadow-cached page in the replica) is sent as a reference.
//     Candidates come from a bounded content index keyed by the 64-bit xxh3
//     hash and are confirmed byte for byte before they are used.
//   - Compression: the literal blocks of a shadow-cached page are sent as an
//     XBZRLE-like delta against the replica's copy when that is smaller; the
//     whole chunk payload is then compressed with S2 when that shrinks it.
//
// Collision bound: a change can be missed only on a page outside the shadow
// cache, when a changed block keeps its 32-bit fingerprint: probability 2^-32
// per changed block of such a page. Memory: 4 B per block (64 MiB per GiB of
// guest at 64 B blocks, 16 MiB at 256 B), 1 B + 4 B per page of flags and
// shadow slot, plus the bounded shadow cache and content index. See
// MemoryOverhead.
//
// Wire format (version 1, little endian): a 44-byte header with CRC32C, then
// chunk records (at most ChunkPages pages each, in ascending page order),
// an optional device-state record, and a trailer carrying the CRC32C of every
// preceding byte. Each record has a 20-byte header (type, codec, sequence,
// lengths, CRC32C of header and payload); every length is bounded before any
// allocation. The decoder stages the whole checkpoint and verifies it before
// Staged.Apply touches the replica.
package fgbi
