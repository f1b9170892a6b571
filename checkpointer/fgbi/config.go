// SPDX-License-Identifier: Apache-2.0

package fgbi

import (
	"errors"
	"fmt"
	"math/bits"
	"runtime"
)

// PageSize is the guest page size the codec works in.
const PageSize = 4096

// ChunkPages is the most pages one chunk record carries; chunks are the unit
// of parallel work and bound the decoder's per-record allocation.
const ChunkPages = 256

// MaxStateSize bounds the device-state blob (QEMU's is about 366 KB).
const MaxStateSize = 16 << 20

// DefaultXORCacheBytes is the shadow cache size used when Config leaves it 0
// (QEMU's XBZRLE default).
const DefaultXORCacheBytes = 64 << 20

// Errors returned by the codec, always wrapped with context.
var (
	// ErrCorrupt: a checksum mismatch or malformed record.
	ErrCorrupt = errors.New("corrupt checkpoint")
	// ErrVersion: the stream is a checkpoint of an unsupported version.
	ErrVersion = errors.New("unsupported checkpoint version")
	// ErrRange: a page number or block reference outside guest memory.
	ErrRange = errors.New("out of range")
	// ErrTooLarge: a length beyond what MemSize or the codec limits allow.
	ErrTooLarge = errors.New("too large")
	// ErrTruncated: the stream ended inside the checkpoint.
	ErrTruncated = errors.New("truncated checkpoint")
	// ErrOrder: a record out of order, duplicated or missing.
	ErrOrder = errors.New("record out of order")
	// ErrConfig: an invalid Config, or a checkpoint made for another one.
	ErrConfig = errors.New("config mismatch")
	// ErrNoBase: a device-state delta arrived but no base state is held.
	ErrNoBase = errors.New("state delta without base")
	// ErrInput: Encode was called with invalid arguments.
	ErrInput = errors.New("invalid encode input")
)

// Config configures both ends; encoder and decoder must agree on MemSize and
// BlockSize (the header carries both and the decoder checks them).
type Config struct {
	// MemSize is the guest memory in bytes, a multiple of PageSize.
	MemSize uint64
	// BlockSize is the change-detection granularity: a power of two from
	// 64 to 4096; 0 means 64.
	BlockSize int
	// Sharing sends zero blocks and already-held blocks as references.
	Sharing bool
	// Compression enables the XOR delta against cached pages and S2.
	Compression bool
	// XORCacheBytes bounds the shadow cache of hot pages used for exact
	// change detection, delta bases and sharing; 0 means 64 MiB, negative
	// disables the cache.
	XORCacheBytes int
	// Workers is the number of goroutines; 0 means GOMAXPROCS.
	Workers int
}

// normalize validates cfg and fills the defaults.
func (c Config) normalize() (Config, error) {
	if c.BlockSize == 0 {
		c.BlockSize = 64
	}
	if c.BlockSize < 64 || c.BlockSize > PageSize || bits.OnesCount(uint(c.BlockSize)) != 1 {
		return c, fmt.Errorf("block size %d: want a power of two 64..4096: %w", c.BlockSize, ErrConfig)
	}
	if c.MemSize == 0 || c.MemSize%PageSize != 0 {
		return c, fmt.Errorf("memory size %d: want a positive multiple of %d: %w", c.MemSize, PageSize, ErrConfig)
	}
	if c.MemSize/uint64(c.BlockSize) >= 1<<32-1 {
		return c, fmt.Errorf("memory size %d: at most 2^32-2 blocks: %w", c.MemSize, ErrConfig)
	}
	if c.XORCacheBytes == 0 {
		c.XORCacheBytes = DefaultXORCacheBytes
	}
	if c.XORCacheBytes < 0 {
		c.XORCacheBytes = 0
	}
	if c.Workers <= 0 {
		c.Workers = runtime.GOMAXPROCS(0)
	}
	return c, nil
}

func (c Config) pages() uint64      { return c.MemSize / PageSize }
func (c Config) blocksPerPage() int { return PageSize / c.BlockSize }
func (c Config) cachePages() int    { return c.XORCacheBytes / PageSize }

// MemoryOverhead reports the encoder's memory in bytes for cfg: the
// per-guest part (block fingerprints, page flags and shadow slots, which
// scale with MemSize) and the fixed part (shadow cache, content index and
// the workers' in-chunk tables), leaving out the payload buffers of at most
// two batches of chunks in flight.
func MemoryOverhead(cfg Config) (perGuest, fixed uint64, err error) {
	c, err := cfg.normalize()
	if err != nil {
		return 0, 0, err
	}
	pages := c.pages()
	perGuest = pages*uint64(c.blocksPerPage())*4 + pages*(1+4)
	cp := min(uint64(c.cachePages()), pages)
	local := uint64(newLocalTable(ChunkPages*c.blocksPerPage()).mask+1) * 24
	fixed = cp*(PageSize+8+2) + uint64(indexSize(c))*8 + uint64(c.Workers)*local
	return perGuest, fixed, nil
}
