// SPDX-License-Identifier: Apache-2.0

package fgbi

import (
	"encoding/binary"
	"fmt"

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
		buf := d.getBuf(n)
		defer d.putBuf(buf)
		if raw, err = s2.Decode(buf[:n], payload); err != nil {
			return fmt.Errorf("s2: %v: %w", err, ErrCorrupt)
		}
	}
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
	st.arena = d.getBuf(int(np) * PageSize)[:0]
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
	total := d.cfg.pages() * bpp
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
		n := count * bs
		off := uint64(len(st.arena))
		if off+n > uint64(cap(st.arena)) {
			return fmt.Errorf("more than %d changed bytes: %w", cap(st.arena), ErrTooLarge)
		}
		st.arena = st.arena[:off+n]
		out := st.arena[off:]
		switch kind {
		case segLit:
			if flags&pageDelta != 0 {
				used, err := ApplyDelta(out, replica[dst:dst+n], delta.b)
				if err != nil {
					return err
				}
				delta.b = delta.b[used:]
			} else {
				copy(out, lit.take(n, "literal"))
				if lit.err != nil {
					return lit.err
				}
			}
		case segZero:
			clear(out)
		case segRefR:
			src := ops.uvarint("reference")
			if ops.err != nil {
				return ops.err
			}
			if src >= total || count > total-src {
				return fmt.Errorf("reference to block %d+%d: %w", src, count, ErrRange)
			}
			copy(out, replica[src*bs:(src+count)*bs])
		case segRefL:
			back := ops.uvarint("local reference")
			if ops.err != nil {
				return ops.err
			}
			ord := off / bs
			if back == 0 || back > ord {
				return fmt.Errorf("local reference %d back from block %d: %w", back, ord, ErrRange)
			}
			for k := uint64(0); k < count; k++ { // may overlap: block by block
				copy(out[k*bs:(k+1)*bs], st.arena[(ord-back+k)*bs:(ord-back+k+1)*bs])
			}
		default:
			return fmt.Errorf("segment kind %d: %w", kind, ErrCorrupt)
		}
		st.addRun(dst, uint32(off), uint32(n))
		pos += count
	}
	return nil
}

// addRun records that arena[src:src+n] goes to replica offset dst, merging
// with the previous run when both are contiguous.
func (st *staged) addRun(dst uint64, src, n uint32) {
	if k := len(st.runs); k > 0 {
		l := &st.runs[k-1]
		if l.dst+uint64(l.n) == dst && l.src+l.n == src {
			l.n += n
			return
		}
	}
	st.runs = append(st.runs, run{dst: dst, src: src, n: n})
}

// getBuf returns a buffer of capacity at least n from the decoder's pool;
// buffers come back through putBuf (S2 scratch) or Staged.Apply (arenas).
func (d *Decoder) getBuf(n int) []byte {
	if b, ok := d.pool.Get().(*[]byte); ok && cap(*b) >= n {
		return (*b)[:n]
	}
	return make([]byte, n, max(n, ChunkPages*PageSize))
}

func (d *Decoder) putBuf(b []byte) {
	if cap(b) >= ChunkPages*PageSize {
		d.pool.Put(&b)
	}
}
