// SPDX-License-Identifier: Apache-2.0

// Package baseline holds the checkpoint encoders FGBI is measured against,
// each re-implemented from its published description, and the FGBI modes
// behind the same interface:
//
//	(a) Remus: every dirty page raw, with its page number.
//	(b) Xen checkpoint compression: 4-byte words compared against an LRU of
//	    8192 earlier page copies, runs with 1-byte headers (1 bit run/skip,
//	    7 bits length), EMPTY and FULL page markers.
//	(c) QEMU XBZRLE: XOR against a 64 MB direct-mapped page cache, ULEB128
//	    zero and non-zero runs, raw on a cache miss or overflow.
//	(d) A general compressor (S2, or zstd at its fastest level) over whole
//	    dirty pages.
//	(e) FGBI with block detection only, + sharing, + compression.
//
// Every codec decodes into a replica, so the benchmark verifies each one
// reproduces the traced memory byte for byte.
package baseline
