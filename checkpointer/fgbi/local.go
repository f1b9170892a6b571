// SPDX-License-Identifier: Apache-2.0

package fgbi

import "bytes"

// localTable finds blocks emitted earlier in the same chunk by content. It is
// a direct-mapped table cleared in O(1) per chunk by a generation counter.
type localTable struct {
	hash []uint64
	ord  []uint32 // ordinal of the block within the chunk
	off  []uint32 // offset of its content in the chunk's data
	gen  []uint32
	cur  uint32
	mask uint64
}

type localHit struct{ ord, off uint32 }

func newLocalTable(blocks int) localTable {
	n := 1
	for n < 2*blocks {
		n <<= 1
	}
	return localTable{hash: make([]uint64, n), ord: make([]uint32, n), off: make([]uint32, n),
		gen: make([]uint32, n), mask: uint64(n - 1)}
}

// next starts a new chunk: every entry becomes empty.
func (t *localTable) next() {
	t.cur++
	if t.cur == 0 {
		clear(t.gen)
		t.cur = 1
	}
}

func (t *localTable) put(h uint64, ord, off uint32) {
	i := h & t.mask
	t.hash[i], t.ord[i], t.off[i], t.gen[i] = h, ord, off, t.cur
}

func (t *localTable) get(h uint64) (localHit, bool) {
	i := h & t.mask
	if t.gen[i] != t.cur || t.hash[i] != h {
		return localHit{}, false
	}
	return localHit{ord: t.ord[i], off: t.off[i]}, true
}

// confirm reports whether block src (a global block number) is in the shadow
// cache with exactly the content blk: only then does the backup's replica
// hold blk there, whatever the hash said.
func (e *Encoder) confirm(src uint64, blk []byte) bool {
	bpp := uint64(e.bpp)
	if src/bpp >= uint64(len(e.sh.slot)) {
		return false
	}
	old := e.sh.page(src / bpp)
	if old == nil {
		return false
	}
	o := int(src%bpp) * e.cfg.BlockSize
	return bytes.Equal(blk, old[o:o+len(blk)])
}
