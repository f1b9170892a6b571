// SPDX-License-Identifier: Apache-2.0

package fgbi

import (
	"encoding/binary"
	"fmt"
	"slices"

	"github.com/klauspost/compress/s2"
)

// cursor reads uvarints and slices from a payload, remembering the first
// error so the parsing code stays linear.
type cursor struct {
	b   []byte
	err error
}

func (c *cursor) uvarint(what string) uint64 {
	if c.err != nil {
		return 0
	}
	v, n := binary.Uvarint(c.b)
	if n <= 0 {
		c.err = fmt.Errorf("%s: bad varint: %w", what, ErrCorrupt)
		return 0
	}
	c.b = c.b[n:]
	return v
}

func (c *cursor) byte1(what string) byte {
	if c.err != nil {
		return 0
	}
	if len(c.b) == 0 {
		c.err = fmt.Errorf("%s: past the end: %w", what, ErrCorrupt)
		return 0
	}
	v := c.b[0]
	c.b = c.b[1:]
	return v
}

func (c *cursor) take(n uint64, what string) []byte {
	if c.err != nil {
		return nil
	}
	if n > uint64(len(c.b)) {
		c.err = fmt.Errorf("%s: %d bytes, %d left: %w", what, n, len(c.b), ErrCorrupt)
		return nil
	}
	v := c.b[:n]
	c.b = c.b[n:]
	return v
}

// decodeChunk decompresses and parses one chunk record into st, reading the
// replica for delta bases and replica references. Every count, page number
// and reference is checked before use.
func (d *Decoder) decodeChunk(st *staged, rec record, payload, replica []byte) error {
	raw := payload
	if rec.codec == codecS2 {
		n, err := s2.DecodedLen(payload)
		if err != nil || n != int(rec.rawLen) {
			return fmt.Errorf("s2 length %d, record says %d: %w", n, rec.rawLen, ErrCorrupt)
		}
		buf := d.getBuf(n)[:n]
		if raw, err = s2.Decode(buf, payload); err != nil {
			return fmt.Errorf("s2: %v: %w", err, ErrCorrupt)
		}
		d.putBuf(payload)
	}
	// The staged chunk owns raw from here: literal runs are applied from it.
	st.raw = raw
	c := &cursor{b: raw}
	first := c.uvarint("first page")
	np := c.uvarint("page count")
	nops, ndelta, nlit := c.uvarint("ops length"), c.uvarint("delta length"), c.uvarint("literal length")
	if c.err != nil {
		return c.err
	}
	if np == 0 || np > ChunkPages {
		return fmt.Errorf("%d pages in a chunk: %w", np, ErrCorrupt)
	}
	ops := &cursor{b: c.take(nops, "ops")}
	delta := &cursor{b: c.take(ndelta, "deltas")}
	lit := &cursor{b: c.take(nlit, "literals")}
	if c.err != nil {
		return c.err
	}
	if len(c.b) != 0 {
		return fmt.Errorf("%d bytes after the chunk's streams: %w", len(c.b), ErrCorrupt)
	}
	d.mu.Lock()
	if n := len(d.runs); n > 0 {
		st.runs, d.runs = d.runs[n-1], d.runs[:n-1]
	}
	if n := len(d.ords); n > 0 {
		st.ords, d.ords = d.ords[n-1], d.ords[:n-1]
	}
	d.mu.Unlock()
	st.limit = np * PageSize
	st.pages = int(np)
	pages := d.cfg.pages()
	pfn := first
	for p := uint64(0); p < np; p++ {
		gap := ops.uvarint("page gap")
		if p == 0 && gap != 0 {
			return fmt.Errorf("first page gap %d: %w", gap, ErrCorrupt)
		}
		if p > 0 {
			if gap >= pages || pfn+1+gap >= pages {
				return fmt.Errorf("page after %d + %d: %w", pfn, gap, ErrRange)
			}
			pfn += 1 + gap
		}
		if pfn >= pages {
			return fmt.Errorf("page %d beyond %d pages: %w", pfn, pages, ErrRange)
		}
		if p == 0 {
			st.first = pfn
		}
		if err := d.decodePage(st, pfn, ops, delta, lit, replica); err != nil {
			return fmt.Errorf("page %d: %w", pfn, err)
		}
	}
	st.last = pfn
	for _, s := range []*cursor{ops, delta, lit} {
		if s.err == nil && len(s.b) != 0 {
			return fmt.Errorf("%d unused stream bytes: %w", len(s.b), ErrCorrupt)
		}
	}
	return nil
}

// decodePage parses one page's flags and run list and appends its changed
// blocks to the arena.
func (d *Decoder) decodePage(st *staged, pfn uint64, ops, delta, lit *cursor, replica []byte) error {
	bs, bpp := uint64(d.cfg.BlockSize), uint64(d.cfg.blocksPerPage())
	flags := ops.byte1("page flags")
	nseg := ops.uvarint("segment count")
	if ops.err != nil {
		return ops.err
	}
	if flags&^pageDelta != 0 || nseg == 0 || nseg > bpp {
		return fmt.Errorf("flags %#x, %d segments: %w", flags, nseg, ErrCorrupt)
	}
	pos := uint64(0)
	for s := uint64(0); s < nseg; s++ {
		kind := ops.byte1("segment kind")
		count := ops.uvarint("segment length")
		if ops.err != nil {
			return ops.err
		}
		if count == 0 || count > bpp-pos {
			return fmt.Errorf("segment of %d blocks at block %d: %w", count, pos, ErrCorrupt)
		}
		if kind == segSkip {
			pos += count
			continue
		}
		dst := pfn*PageSize + pos*bs
		if err := d.decodeSeg(st, kind, dst, count, flags, ops, delta, lit, replica); err != nil {
			return err
		}
		pos += count
	}
	return nil
}

// decodeSeg stages one segment of count blocks going to replica offset dst.
// Literal blocks become runs from the decoded payload; replica-reference and
// local-reference blocks are materialized in the arena (ords maps each
// emitted block's ordinal to its source+1); zero blocks become clearing
// runs; a delta becomes runs of its literal bytes only (from the payload),
// since the replica already holds the rest.
func (d *Decoder) decodeSeg(st *staged, kind byte, dst, count uint64, flags byte, ops, delta, lit *cursor, replica []byte) error {
	bs := uint64(d.cfg.BlockSize)
	n := count * bs
	if kind == segZero || (kind == segLit && flags&pageDelta != 0) {
		for k := uint64(0); k < count; k++ {
			st.ords = append(st.ords, 0)
		}
		if kind == segZero {
			st.addRun(dst, zeroSrc, uint32(n))
			return nil
		}
		used, err := st.deltaRuns(dst, n, delta.b)
		delta.b = delta.b[used:]
		return err
	}
	if kind == segLit {
		src := st.rawOff(lit.b)
		if lit.take(n, "literal"); lit.err != nil {
			return lit.err
		}
		for k := uint64(0); k < count; k++ {
			st.ords = append(st.ords, src+uint32(k*bs)+1)
		}
		st.addRun(dst, src, uint32(n))
		return nil
	}
	off := uint64(len(st.arena))
	if off+n > st.limit {
		return fmt.Errorf("more than %d changed bytes: %w", st.limit, ErrTooLarge)
	}
	if st.arena == nil { // only chunks with references need an arena
		st.arena = d.getBuf(int(st.limit))
	}
	st.arena = slices.Grow(st.arena, int(n))[:off+n]
	out := st.arena[off:]
	switch kind {
	case segRefR:
		src := ops.uvarint("reference")
		if ops.err != nil {
			return ops.err
		}
		total := d.cfg.pages() * uint64(d.cfg.blocksPerPage())
		if src >= total || count > total-src {
			return fmt.Errorf("reference to block %d+%d: %w", src, count, ErrRange)
		}
		copy(out, replica[src*bs:(src+count)*bs])
	case segRefL:
		back := ops.uvarint("local reference")
		if ops.err != nil {
			return ops.err
		}
		ord := uint64(len(st.ords))
		if back == 0 || back > ord {
			return fmt.Errorf("local reference %d back from block %d: %w", back, ord, ErrRange)
		}
		for k := uint64(0); k < count; k++ { // may overlap: block by block
			so := st.ords[ord-back+k]
			if so == 0 {
				return fmt.Errorf("local reference to an unmaterialized block: %w", ErrCorrupt)
			}
			copy(out[k*bs:(k+1)*bs], st.bytes(so-1, uint32(bs)))
			st.ords = append(st.ords, uint32(off+k*bs+1))
		}
		st.addRun(dst, uint32(off), uint32(n))
		return nil
	default:
		return fmt.Errorf("segment kind %d: %w", kind, ErrCorrupt)
	}
	for k := uint64(0); k < count; k++ {
		st.ords = append(st.ords, uint32(off+k*bs+1))
	}
	st.addRun(dst, uint32(off), uint32(n))
	return nil
}

// deltaRuns parses a delta covering n bytes at replica offset dst and
// stages its literal runs; it returns the bytes of enc consumed.
func (st *staged) deltaRuns(dst, n uint64, enc []byte) (int, error) {
	pos, r := uint64(0), 0
	for pos < n {
		eq, a := binary.Uvarint(enc[r:])
		if a <= 0 {
			return r, fmt.Errorf("delta run header: %w", ErrCorrupt)
		}
		r += a
		ln, b := binary.Uvarint(enc[r:])
		if b <= 0 {
			return r, fmt.Errorf("delta run header: %w", ErrCorrupt)
		}
		r += b
		if eq > n-pos || ln > n-pos-eq {
			return r, fmt.Errorf("delta run past %d bytes: %w", n, ErrCorrupt)
		}
		pos += eq
		if ln == 0 && pos != n {
			return r, fmt.Errorf("empty delta literal before the end: %w", ErrCorrupt)
		}
		if uint64(len(enc)-r) < ln {
			return r, fmt.Errorf("delta literal past its record: %w", ErrCorrupt)
		}
		if ln > 0 {
			st.addRun(dst+pos, st.rawOff(enc[r:]), uint32(ln))
		}
		r += int(ln)
		pos += ln
	}
	return r, nil
}

// addRun records that arena[src:src+n] goes to replica offset dst, merging
// with the previous run when both are contiguous.
func (st *staged) addRun(dst uint64, src, n uint32) {
	if k := len(st.runs); k > 0 {
		l := &st.runs[k-1]
		// A zero run continues only a zero run (zeroSrc+n wraps around).
		if l.dst+uint64(l.n) == dst && (l.src == zeroSrc) == (src == zeroSrc) && (src == zeroSrc || l.src+l.n == src) {
			l.n += n
			return
		}
	}
	st.runs = append(st.runs, run{dst: dst, src: src, n: n})
}

// getBuf returns an empty buffer from the decoder's free list (or a new
// one); buffers come back through putBuf (S2 scratch) and Staged.Apply
// (arenas). A free list, not a sync.Pool, so buffers survive GC cycles.
func (d *Decoder) getBuf(n int) []byte {
	d.mu.Lock()
	defer d.mu.Unlock()
	for i := len(d.free) - 1; i >= 0; i-- {
		if b := d.free[i]; cap(b) >= n {
			d.free[i] = d.free[len(d.free)-1]
			d.free = d.free[:len(d.free)-1]
			return b[:0]
		}
	}
	return make([]byte, 0, n)
}

// maxFree bounds the decoder's free lists (64 chunk buffers, 64 MiB), so a
// full resync does not pin its staging memory for good.
const maxFree = 64

// putBuf returns b to the free list, or drops it when the list is full.
func (d *Decoder) putBuf(b []byte) {
	if cap(b) == 0 {
		return
	}
	d.mu.Lock()
	if len(d.free) < maxFree {
		d.free = append(d.free, b[:0])
	}
	d.mu.Unlock()
}
