// SPDX-License-Identifier: Apache-2.0

package disk

import (
	"math/bits"
)

// tracker is a bitmap of BlockSize blocks: the blocks written since the
// last cut. Not safe for concurrent use; Export guards it.
type tracker struct {
	words  []uint64
	blocks int64
	marked int64 // blocks marked now
}

func newTracker(size int64) *tracker {
	n := size / BlockSize
	return &tracker{words: make([]uint64, (n+63)/64), blocks: n}
}

// mark records a write of n bytes at off (any alignment).
func (t *tracker) mark(off, n int64) {
	if n <= 0 {
		return
	}
	for b := off / BlockSize; b <= (off+n-1)/BlockSize && b < t.blocks; b++ {
		if bit := uint64(1) << (b % 64); t.words[b/64]&bit == 0 {
			t.words[b/64] |= bit
			t.marked++
		}
	}
}

// markAll marks every block.
func (t *tracker) markAll() { t.mark(0, t.blocks*BlockSize) }

// take returns the marked blocks as ascending, coalesced extents and
// clears the bitmap.
func (t *tracker) take(dst []Extent) []Extent {
	for wi, w := range t.words {
		for w != 0 {
			bit := int64(bits.TrailingZeros64(w))
			w &^= 1 << bit
			b := int64(wi)*64 + bit
			off := b * BlockSize
			if k := len(dst) - 1; k >= 0 && dst[k].Off+dst[k].Len == off {
				dst[k].Len += BlockSize
			} else {
				dst = append(dst, Extent{Off: off, Len: BlockSize})
			}
		}
		t.words[wi] = 0
	}
	t.marked = 0
	return dst
}

// has reports whether block b is marked.
func (t *tracker) has(b int64) bool { return b < t.blocks && t.words[b/64]&(1<<(b%64)) != 0 }

// unmark clears block b.
func (t *tracker) unmark(b int64) {
	if b < t.blocks && t.has(b) {
		t.words[b/64] &^= 1 << (b % 64)
		t.marked--
	}
}

// clear unmarks every block.
func (t *tracker) clear() {
	clear(t.words)
	t.marked = 0
}
