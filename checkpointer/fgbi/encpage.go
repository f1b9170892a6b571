// SPDX-License-Identifier: Apache-2.0

package fgbi

import (
	"bytes"
	"encoding/binary"
	"math/bits"

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
	bs, bpp  int
	segs     []seg
	h        [64]uint64 // block hashes of the current page (pages without a shadow copy)
	zeroHash uint64     // xxh3 of an all-zero block
	ops      []byte
	delta    []byte
	lit      []byte
	local    localTable
}

func newWorker(c Config) *worker {
	bpp := c.blocksPerPage()
	return &worker{bs: c.BlockSize, bpp: bpp, local: newLocalTable(ChunkPages * bpp),
		zeroHash: xxh3.Hash(make([]byte, c.BlockSize))}
}

// encodeChunk encodes pages pfns (contents data) into o. It writes only the
// fingerprints and flags of its own pages; everything shared across chunks
// (shadow, index) is read-only until commit.
func (wk *worker) encodeChunk(e *Encoder, o *chunkOut, bufs *chunkBufs, pfns []uint64, data []byte) {
	wk.ops, wk.delta, wk.lit = wk.ops[:0], wk.delta[:0], wk.lit[:0]
	wk.local.next()
	*o = chunkOut{bufs: bufs, cache: o.cache[:0]}
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
		changed, small := wk.detect(page, old, hs, known)
		deltaPage := old != nil && e.cfg.Compression
		for m := changed; m != 0; m &= m - 1 {
			b := bits.TrailingZeros64(m)
			blk := page[b*bs : (b+1)*bs]
			o.stats.ChangedBlocks++
			s := seg{kind: segLit, blk: b, count: 1, ord: ord}
			// A block of a cached page that differs in a word or two will
			// be a tiny delta: not worth hashing or sharing lookups. The
			// fingerprints of a cached page are brought up to date only
			// when it leaves the cache (see Encoder.rehash).
			tiny := deltaPage && small&(1<<b) != 0
			share := e.cfg.Sharing && !tiny
			var h uint64
			zero := false
			if old == nil {
				h = wk.h[b]
				hs[b] = uint32(h)
				zero = share && h == wk.zeroHash && isZero(blk)
			} else if share {
				if zero = isZero(blk); zero {
					h = wk.zeroHash
				} else {
					h = xxh3.Hash(blk)
				}
			}
			switch {
			case !share:
			case zero:
				s.kind = segZero
				o.stats.ZeroBlocks++
			case !e.sampled(e.sample, pfn*uint64(bpp)+uint64(b)):
				share = false // sharing found little lately: look up a sample only
			default:
				o.lookups++
				if so, ok := wk.local.get(h); ok && bytes.Equal(blk, data[so.off:so.off+uint32(bs)]) {
					s.kind, s.src = segRefL, uint64(so.ord)
					o.stats.SharedBlocks++
					o.hits++
				} else if src, ok := e.idx.get(h); ok && e.confirm(src, blk) {
					s.kind, s.src = segRefR, src
					o.stats.SharedBlocks++
					o.hits++
				} else if !deltaPage {
					// Literal blocks of a cached page will likely go as a
					// delta, which the decoder does not materialize: only
					// other pages' literals are local sources.
					wk.local.put(h, uint32(ord), uint32(p*PageSize+b*bs))
				}
			}
			if cacheOn && share && !zero {
				bufs.ins = append(bufs.ins, insert{hash: h, blk: pfn*uint64(bpp) + uint64(b)})
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
		if cacheOn {
			if old == nil {
				o.cache = append(o.cache, span{page: int32(p), count: int32(bpp), fresh: true})
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
		wk.emitPage(e, o, pfn, page, old)
	}
	o.stats.SentPages = o.pages
	if o.pages == 0 {
		return
	}
	raw := bufs.raw
	for _, v := range []uint64{first, uint64(o.pages), uint64(len(wk.ops)), uint64(len(wk.delta)), uint64(len(wk.lit))} {
		raw = binary.AppendUvarint(raw, v)
	}
	bufs.raw = append(append(append(raw, wk.ops...), wk.delta...), wk.lit...)
	if e.cfg.Compression {
		o.compress()
	}
}

// detect returns the page's changed blocks as a bit mask (bit b = block b),
// and among them those where at most two 8-byte words differ. With the
// backup's copy (old) the comparison is exact; without it, each block's
// xxh3 is compared with its recorded fingerprint (all blocks count as
// changed when the page is not known), and wk.h keeps the hashes.
func (wk *worker) detect(page, old []byte, hs []uint32, known bool) (changed, small uint64) {
	bs := wk.bs
	for b := 0; b < wk.bpp; b++ {
		blk := page[b*bs : (b+1)*bs]
		if old == nil {
			h := wk.zeroHash
			if !isZero(blk) {
				h = xxh3.Hash(blk)
			}
			wk.h[b] = h
			if !known || uint32(h) != hs[b] {
				changed |= 1 << b
			}
			continue
		}
		ob := old[b*bs : (b+1)*bs]
		if bs == 64 {
			// One vectorized compare per 4 blocks first: most groups of a
			// dirty page are unchanged.
			if b%4 == 0 && bytes.Equal(page[b*bs:(b+4)*bs], old[b*bs:(b+4)*bs]) {
				b += 3
				continue
			}
			if !diff64(blk, ob) {
				continue
			}
		} else if bytes.Equal(blk, ob) {
			continue
		}
		changed |= 1 << b
		if diffWords(blk, ob) <= 2 {
			small |= 1 << b
		}
	}
	return changed, small
}

// diff64 reports whether two 64-byte blocks differ, without a call.
func diff64(a, b []byte) bool {
	a, b = a[:64], b[:64]
	le := binary.LittleEndian
	// ^ and | share a precedence level in Go: parenthesize each XOR.
	x := (le.Uint64(a[0:]) ^ le.Uint64(b[0:])) | (le.Uint64(a[8:]) ^ le.Uint64(b[8:])) |
		(le.Uint64(a[16:]) ^ le.Uint64(b[16:])) | (le.Uint64(a[24:]) ^ le.Uint64(b[24:])) |
		(le.Uint64(a[32:]) ^ le.Uint64(b[32:])) | (le.Uint64(a[40:]) ^ le.Uint64(b[40:])) |
		(le.Uint64(a[48:]) ^ le.Uint64(b[48:])) | (le.Uint64(a[56:]) ^ le.Uint64(b[56:]))
	return x != 0
}

// diffWords counts the differing 8-byte words of a and b, stopping at 3.
func diffWords(a, b []byte) int {
	n := 0
	b = b[:len(a)]
	for i := 0; i+8 <= len(a) && n < 3; i += 8 {
		if binary.LittleEndian.Uint64(a[i:]) != binary.LittleEndian.Uint64(b[i:]) {
			n++
		}
	}
	return n
}

// isZero reports whether blk is all zero bytes. Most nonzero blocks have a
// nonzero first word: they cost one load.
func isZero(blk []byte) bool {
	if len(blk) >= 8 && binary.LittleEndian.Uint64(blk) != 0 {
		return false
	}
	var x uint64
	for i := 0; i+8 <= len(blk); i += 8 {
		x |= binary.LittleEndian.Uint64(blk[i:])
	}
	return x == 0
}

// sampled says whether the item with the given key (a block or page number)
// gets an optional effort whose recent payoff made the encoder sample it one
// in every: sharing lookups on random data, deltas on rewritten pages. It
// depends only on the key and the epoch, so output does not depend on how
// chunks were scheduled, and the sampled set rotates across epochs.
func (e *Encoder) sampled(every int, key uint64) bool {
	return every <= 1 || (key+e.rot)%uint64(every) == 0
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
func (wk *worker) emitPage(e *Encoder, o *chunkOut, pfn uint64, page, old []byte) {
	bs := wk.bs
	nlit := 0
	for _, s := range wk.segs {
		if s.kind == segLit {
			nlit += s.count
		}
	}
	flags := uint8(0)
	if e.cfg.Compression && old != nil && nlit > 0 && e.sampled(e.dsample, pfn) {
		o.deltaTries++
		mark, ok := len(wk.delta), true
		limit := nlit * bs * 7 / 8 // a delta must save at least 1/8
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
			o.deltaWins++
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
