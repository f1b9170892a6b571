// SPDX-License-Identifier: Apache-2.0

package fgbi

import (
	"bytes"
	"encoding/binary"

	"github.com/zeebo/xxh3"
)

// Segment kinds of a page's run list.
const (
	segSkip = iota // unchanged blocks
	segLit         // literal blocks (raw, or a delta when the page flag says so)
	segZero        // all-zero blocks
	segRefR        // blocks equal to consecutive replica blocks (pre-checkpoint content)
	segRefL        // blocks equal to blocks emitted earlier in this chunk

	pageDelta = 1 // page flag: literal segments are deltas against the replica
)

type seg struct {
	kind  uint8
	blk   int    // first block in the page
	count int    // blocks
	src   uint64 // segRefR: first source block; segRefL: first source ordinal
	ord   uint64 // ordinal of the first block within the chunk
}

// worker is one goroutine's scratch space, reused across chunks and epochs.
type worker struct {
	bs, bpp int
	zero    []byte
	segs    []seg
	ops     []byte
	delta   []byte
	lit     []byte
	local   localTable
}

func newWorker(c Config) *worker {
	bpp := c.blocksPerPage()
	return &worker{bs: c.BlockSize, bpp: bpp, zero: make([]byte, c.BlockSize),
		local: newLocalTable(ChunkPages * bpp)}
}

// encodeChunk encodes pages pfns (contents data) into o. It writes only the
// fingerprints and flags of its own pages; everything shared across chunks
// (shadow, index) is read-only until commit.
func (wk *worker) encodeChunk(e *Encoder, o *chunkOut, pfns []uint64, data []byte) {
	wk.ops, wk.delta, wk.lit = wk.ops[:0], wk.delta[:0], wk.lit[:0]
	wk.local.next()
	*o = chunkOut{raw: o.raw[:0], enc: o.enc, cache: o.cache[:0], inserts: o.inserts[:0]}
	bs, bpp := wk.bs, wk.bpp
	cacheOn := len(e.sh.owner) > 0
	ord := uint64(0) // ordinal of the next emitted block in this chunk
	first, prev := uint64(0), uint64(0)
	for p, pfn := range pfns {
		page := data[p*PageSize : (p+1)*PageSize]
		known := e.known[pfn] != 0
		var old []byte
		if known {
			old = e.sh.page(pfn)
		}
		hs := e.hashes[pfn*uint64(bpp) : (pfn+1)*uint64(bpp)]
		wk.segs = wk.segs[:0]
		for b := 0; b < bpp; b++ {
			blk := page[b*bs : (b+1)*bs]
			var h uint64
			if old != nil {
				if bytes.Equal(blk, old[b*bs:(b+1)*bs]) {
					continue
				}
				h = xxh3.Hash(blk)
			} else {
				h = xxh3.Hash(blk)
				if known && uint32(h) == hs[b] {
					continue
				}
			}
			hs[b] = uint32(h)
			o.stats.ChangedBlocks++
			s := seg{kind: segLit, blk: b, count: 1, ord: ord}
			switch {
			case !e.cfg.Sharing:
			case bytes.Equal(blk, wk.zero):
				s.kind = segZero
				o.stats.ZeroBlocks++
			default:
				if so, ok := wk.local.get(h); ok && bytes.Equal(blk, data[so.off:so.off+uint32(bs)]) {
					s.kind, s.src = segRefL, uint64(so.ord)
				} else if src, ok := e.idx.get(h); ok && e.confirm(src, blk) {
					s.kind, s.src = segRefR, src
				}
			}
			// Literal blocks of a cached page will likely be sent as a
			// delta, which the decoder does not materialize: not a source.
			if s.kind == segLit && (old == nil || !e.cfg.Compression) {
				wk.local.put(h, uint32(ord), uint32(p*PageSize+b*bs))
			} else if s.kind != segZero {
				o.stats.SharedBlocks++
			}
			if known && cacheOn && s.kind != segZero {
				o.inserts = append(o.inserts, insert{hash: h, blk: pfn*uint64(bpp) + uint64(b)})
			}
			ord++
			wk.addSeg(s)
		}
		if !known {
			e.known[pfn] = 1
		}
		if len(wk.segs) == 0 {
			continue
		}
		if known && cacheOn {
			if old == nil {
				o.cache = append(o.cache, span{page: int32(p), count: int32(bpp)})
			} else {
				for _, s := range wk.segs {
					o.cache = append(o.cache, span{page: int32(p), blk: int32(s.blk), count: int32(s.count)})
				}
			}
		}
		if o.pages == 0 {
			first = pfn
			wk.ops = binary.AppendUvarint(wk.ops, 0)
		} else {
			wk.ops = binary.AppendUvarint(wk.ops, pfn-prev-1)
		}
		prev = pfn
		o.pages++
		wk.emitPage(e, o, page, old)
	}
	o.stats.SentPages = o.pages
	if o.pages == 0 {
		return
	}
	o.raw = binary.AppendUvarint(o.raw, first)
	o.raw = binary.AppendUvarint(o.raw, uint64(o.pages))
	o.raw = binary.AppendUvarint(o.raw, uint64(len(wk.ops)))
	o.raw = binary.AppendUvarint(o.raw, uint64(len(wk.delta)))
	o.raw = binary.AppendUvarint(o.raw, uint64(len(wk.lit)))
	o.raw = append(append(append(o.raw, wk.ops...), wk.delta...), wk.lit...)
	if e.cfg.Compression {
		o.compress()
	}
}

// addSeg appends s to the page's run list, merging it with the previous
// segment when both continue each other.
func (wk *worker) addSeg(s seg) {
	if n := len(wk.segs); n > 0 {
		l := &wk.segs[n-1]
		if l.kind == s.kind && l.blk+l.count == s.blk &&
			(s.kind == segLit || s.kind == segZero || l.src+uint64(l.count) == s.src) {
			l.count++
			return
		}
	}
	wk.segs = append(wk.segs, s)
}

// emitPage writes the page's flags and run list to ops, and its literal
// blocks to lit, or as deltas against old (the replica's copy) when that is
// smaller.
func (wk *worker) emitPage(e *Encoder, o *chunkOut, page, old []byte) {
	bs := wk.bs
	nlit := 0
	for _, s := range wk.segs {
		if s.kind == segLit {
			nlit += s.count
		}
	}
	flags := uint8(0)
	if e.cfg.Compression && old != nil && nlit > 0 {
		mark, ok := len(wk.delta), true
		limit := nlit*bs - 1
		for _, s := range wk.segs {
			if s.kind != segLit {
				continue
			}
			lo, hi := s.blk*bs, (s.blk+s.count)*bs
			wk.delta, ok = AppendDelta(wk.delta, old[lo:hi], page[lo:hi], limit-(len(wk.delta)-mark))
			if !ok {
				break
			}
		}
		if ok {
			flags = pageDelta
			o.stats.DeltaBlocks += nlit
		} else {
			wk.delta = wk.delta[:mark]
		}
	}
	nseg, pos := 0, 0
	for _, s := range wk.segs {
		if s.blk > pos {
			nseg++
		}
		nseg++
		pos = s.blk + s.count
	}
	wk.ops = append(wk.ops, flags)
	wk.ops = binary.AppendUvarint(wk.ops, uint64(nseg))
	pos = 0
	for _, s := range wk.segs {
		if s.blk > pos {
			wk.ops = append(wk.ops, segSkip)
			wk.ops = binary.AppendUvarint(wk.ops, uint64(s.blk-pos))
		}
		wk.ops = append(wk.ops, s.kind)
		wk.ops = binary.AppendUvarint(wk.ops, uint64(s.count))
		switch s.kind {
		case segRefR:
			wk.ops = binary.AppendUvarint(wk.ops, s.src)
		case segRefL:
			// Ordinal of this segment's first block minus the source's.
			wk.ops = binary.AppendUvarint(wk.ops, s.ord-s.src)
		case segLit:
			if flags == 0 {
				wk.lit = append(wk.lit, page[s.blk*bs:(s.blk+s.count)*bs]...)
				o.stats.LiteralBytes += s.count * bs
			}
		}
		pos = s.blk + s.count
	}
}
