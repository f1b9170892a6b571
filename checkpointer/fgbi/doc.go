// SPDX-License-Identifier: Apache-2.0

// Package fgbi is the FGBI checkpoint codec: it turns the dirty pages of one
// epoch into a compact, self-delimiting, checksummed checkpoint, and turns it
// back into replica memory on the backup.
//
// Encoding, per dirty page (pages are split into chunks of ChunkPages that
// Workers goroutines encode in parallel; the work is proportional to the
// dirty set, never to guest memory):
//
//   - Change detection per block (BlockSize, 64 B default). A page in the
//     shadow cache (a bounded CLOCK cache, XORCacheBytes, holding exactly
//     what the backup holds for its hot pages) is compared with its copy
//     word by word: exact, and no hashing at all for unchanged blocks. Any
//     other page is compared through a 32-bit fingerprint per block (the low
//     half of xxh3-64) recorded when the block was last sent; fingerprints of
//     a cached page are refreshed when it leaves the cache.
//   - Sharing: an all-zero block costs a run entry; a block whose content
//     the backup already holds (an earlier block of the same chunk, or a
//     block of a shadow-cached page in the replica) is sent as a reference.
//     Candidates come from a bounded content index keyed by the 64-bit xxh3
//     hash and are confirmed byte for byte against the encoder's own copy
//     before they are used, so a hash collision can never corrupt a replica.
//   - Compression: the changed blocks of a cached page go as an XBZRLE-like
//     delta against the replica's copy when that is smaller than the blocks;
//     then the chunk payload is compressed with S2 when that saves at least
//     1/32. Each step is bounded by the bytes it replaces, so the CPU cost
//     per page is bounded.
//
// Collision bound: a change can be missed only on a page outside the shadow
// cache, when a changed block keeps its 32-bit fingerprint, with probability
// 2^-32 per changed block of such a page (hot pages are in the cache, where
// detection is exact). 64-bit fingerprints would make that 2^-64 but double
// the largest memory cost; 4 B per block was chosen to keep the per-guest
// memory at 64 MiB per GiB (6.3%) for 64 B blocks, 16 MiB for 256 B blocks.
// MemoryOverhead reports the exact figures: add 5 B per page (flags and
// shadow slot) and the fixed shadow cache and index (66 MiB by default).
//
// Wire format (version 1, little endian): a 44-byte header with CRC32C
// (magic, version, flags, epoch, MemSize, BlockSize), then chunk records (at
// most ChunkPages pages each, sequence numbers 0, 1, ..., pages ascending
// across them), the device-state record when the header announces one, and
// a trailer with the epoch, the chunk and page counts and the CRC32C of
// every preceding byte. Counts live in the trailer so the encoder can write
// each batch of chunks as soon as it is encoded. Each record has a 20-byte
// header (type, codec, sequence, lengths, CRC32C of header and payload);
// every length is bounded before anything is allocated. The decoder stages
// the whole checkpoint against the untouched replica and verifies all of
// it; only Staged.Apply writes the replica.
package fgbi
