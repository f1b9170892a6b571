// SPDX-License-Identifier: Apache-2.0

package fgbi

import "bytes"

// localTable finds blocks emitted earlier in the same chunk by content. It is
// a direct-mapped table, one 24-byte entry per slot (one cache line per
// lookup), cleared in O(1) per chunk by a generation counter.
type localTable struct {
	ent  []localEnt
	cur  uint32
	mask uint64
}

type localEnt struct {
	hash     uint64
	gen      uint32
	ord, off uint32 // ordinal of the block within the chunk; offset of its content in the chunk's data
}

type localHit struct{ ord, off uint32 }

func newLocalTable(blocks int) localTable {
	n := 1
	for n < blocks/2 { // half the chunk's blocks: 196 KiB at 64 B blocks
		n <<= 1
	}
	return localTable{ent: make([]localEnt, n), mask: uint64(n - 1)}
}

// next starts a new chunk: every entry becomes empty.
func (t *localTable) next() {
	t.cur++
	if t.cur == 0 {
		clear(t.ent)
		t.cur = 1
	}
}

func (t *localTable) put(h uint64, ord, off uint32) {
	t.ent[h&t.mask] = localEnt{hash: h, gen: t.cur, ord: ord, off: off}
}

func (t *localTable) get(h uint64) (localHit, bool) {
	e := &t.ent[h&t.mask]
	if e.gen != t.cur || e.hash != h {
		return localHit{}, false
	}
	return localHit{ord: e.ord, off: e.off}, true
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
