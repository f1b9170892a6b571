// SPDX-License-Identifier: Apache-2.0

package fgbi

import (
	"encoding/binary"
	"fmt"
	"io"
	"sync"
	"sync/atomic"

	"github.com/klauspost/compress/s2"
)

// Decoder reads checkpoints on the backup. It holds the device state of the
// last applied checkpoint as the base of the next state delta. A Decoder is
// not safe for concurrent use.
type Decoder struct {
	cfg    Config
	maxRaw uint32 // decoded bytes of one chunk record, at most
	maxEnc uint32 // wire bytes of one chunk record, at most
	// maxTotal bounds the decoded bytes of all chunk records together, and
	// so what one checkpoint can make the decoder hold, by MemSize.
	maxTotal uint64
	base     []byte
	mu       sync.Mutex
	free     [][]byte   // buffers for arenas and S2 output
	runs     [][]run    // spare run lists
	ords     [][]uint32 // spare ordinal maps
}

// NewDecoder returns a decoder for cfg (MemSize and BlockSize must match the
// encoder's; Sharing and Compression are read from the stream).
func NewDecoder(cfg Config) (*Decoder, error) {
	c, err := cfg.normalize()
	if err != nil {
		return nil, err
	}
	// Per page: pfn gap, flags, segment count, and at most bpp segments of
	// kind + count + reference; plus the page's literal bytes.
	perPage := PageSize + 3*binary.MaxVarintLen64 + 1 + c.blocksPerPage()*(1+2*binary.MaxVarintLen64)
	raw := ChunkPages*perPage + 5*binary.MaxVarintLen64
	// A whole checkpoint carries at most every page once.
	total := c.pages()*uint64(perPage) + c.pages()*uint64(5*binary.MaxVarintLen64+recordSize)
	return &Decoder{cfg: c, maxRaw: uint32(raw), maxEnc: uint32(s2.MaxEncodedLen(raw)), maxTotal: total}, nil
}

// Staged is a decoded, fully verified checkpoint not yet applied.
type Staged struct {
	d      *Decoder
	epoch  uint64
	chunks []staged
	state  []byte
}

// staged is one chunk's changed blocks: literal bytes stay in the decoded
// payload (raw), blocks copied from references are materialized in arena,
// and runs say where they go in the replica.
type staged struct {
	raw         []byte
	arena       []byte
	runs        []run
	first, last uint64 // first and last page of the chunk
	pages       int
	limit       uint64   // most arena bytes the chunk's page count allows
	ords        []uint32 // per emitted block: its source (see run.src) + 1, 0 if not materialized
}

type run struct {
	dst uint64 // replica offset
	src uint32 // arena offset, rawSrc | offset in raw, or zeroSrc: clear
	n   uint32
}

const (
	// zeroSrc marks a run that clears replica bytes.
	zeroSrc = ^uint32(0)
	// rawSrc marks a source offset in the decoded payload rather than the
	// arena (payloads are far below 2 GiB, so it never makes zeroSrc).
	rawSrc = uint32(1) << 31
)

// bytes returns the n staged bytes at src (an arena or payload offset).
func (st *staged) bytes(src, n uint32) []byte {
	if src&rawSrc != 0 {
		src &^= rawSrc
		return st.raw[src : src+n]
	}
	return st.arena[src : src+n]
}

// rawOff is the source of b[0], b being a part of the decoded payload.
func (st *staged) rawOff(b []byte) uint32 {
	return rawSrc | uint32(cap(st.raw)-cap(b))
}

// Epoch is the checkpoint's epoch number.
func (s *Staged) Epoch() uint64 { return s.epoch }

// State is the full device state carried by the checkpoint, nil if none.
func (s *Staged) State() []byte { return s.state }

// Extents calls fn for every replica range Apply will write, in chunk
// order. Valid until Apply.
func (s *Staged) Extents(fn func(off, n uint64)) {
	for i := range s.chunks {
		for _, r := range s.chunks[i].runs {
			fn(r.dst, uint64(r.n))
		}
	}
}

// Apply writes the checkpoint into replica (MemSize bytes, the slice Decode
// verified it against) and makes its device state the base of the next
// state delta. It cannot fail.
func (s *Staged) Apply(replica []byte) {
	s.d.parallel(len(s.chunks), func(i int) {
		c := &s.chunks[i]
		for _, r := range c.runs {
			if r.src == zeroSrc {
				clear(replica[r.dst : r.dst+uint64(r.n)])
			} else {
				copy(replica[r.dst:r.dst+uint64(r.n)], c.bytes(r.src, r.n))
			}
		}
		s.d.putBuf(c.arena)
		s.d.putBuf(c.raw)
		s.d.mu.Lock()
		if len(s.d.runs) < maxFree {
			s.d.runs = append(s.d.runs, c.runs[:0])
			s.d.ords = append(s.d.ords, c.ords[:0])
		}
		s.d.mu.Unlock()
		c.raw, c.arena, c.runs, c.ords = nil, nil, nil, nil
	})
	if s.state != nil {
		s.d.base = s.state
	}
}

// Decode reads exactly one checkpoint from r, decodes it against replica
// (only read: delta bases and references) and verifies all of it. Nothing
// is written to replica; see Staged.Apply.
func (d *Decoder) Decode(r io.Reader, replica []byte) (*Staged, error) {
	if uint64(len(replica)) != d.cfg.MemSize {
		return nil, fmt.Errorf("replica %d bytes, want %d: %w", len(replica), d.cfg.MemSize, ErrConfig)
	}
	rr := &recordReader{r: r}
	hb := make([]byte, headerSize)
	if err := rr.full(hb, "header"); err != nil {
		return nil, err
	}
	h, err := parseHeader(hb)
	if err != nil {
		return nil, err
	}
	if err := d.checkHeader(h); err != nil {
		return nil, err
	}
	recs, bufs, sp, tr, err := d.records(rr, h)
	if err != nil {
		return nil, err
	}
	s := &Staged{d: d, epoch: h.epoch, chunks: make([]staged, len(recs))}
	errs := make([]error, len(recs))
	d.parallel(len(recs), func(i int) {
		errs[i] = d.decodeChunk(&s.chunks[i], recs[i], bufs[i], replica)
	})
	if err := d.checkChunks(s, errs, tr); err != nil {
		return nil, err
	}
	if sp != nil {
		if s.state, err = decodeState(sp, d.base); err != nil {
			return nil, err
		}
		d.putBuf(sp)
	}
	return s, nil
}

func (d *Decoder) checkHeader(h header) error {
	if h.memSize != d.cfg.MemSize || h.blockSize != uint32(d.cfg.BlockSize) {
		return fmt.Errorf("checkpoint for %d bytes / %d B blocks, decoder has %d / %d: %w",
			h.memSize, h.blockSize, d.cfg.MemSize, d.cfg.BlockSize, ErrConfig)
	}
	return nil
}

// records reads every record after the header, in the only order allowed
// (chunks 0, 1, ..., then the device state if the header announced one,
// then the trailer), and checks the trailer covers exactly what was read.
// Each chunk holds at least one page, so at most MemSize/PageSize chunks
// are accepted.
func (d *Decoder) records(rr *recordReader, h header) (recs []record, bufs [][]byte, sp []byte, tr trailer, err error) {
	maxState := uint32(MaxStateSize + 1 + binary.MaxVarintLen64)
	maxEnc := max(d.maxEnc, uint32(s2.MaxEncodedLen(int(maxState))))
	var total uint64
	for {
		crc := rr.crc
		rec, b, err := rr.next(d.getBuf(0), maxEnc, max(d.maxRaw, maxState))
		if err != nil {
			return nil, nil, nil, tr, fmt.Errorf("record after chunk %d: %w", len(recs), err)
		}
		switch {
		case rec.typ == recChunk && sp == nil && rec.seq == uint32(len(recs)):
			if rec.encLen > d.maxEnc || rec.rawLen > d.maxRaw {
				return nil, nil, nil, tr, fmt.Errorf("chunk %d: %d bytes (%d decoded): %w", len(recs), rec.encLen, rec.rawLen, ErrTooLarge)
			}
			total += uint64(rec.rawLen) + uint64(rec.encLen)
			if uint64(len(recs)) >= d.cfg.pages() || total > 2*d.maxTotal {
				return nil, nil, nil, tr, fmt.Errorf("chunks beyond what %d guest pages need: %w", d.cfg.pages(), ErrTooLarge)
			}
			recs, bufs = append(recs, rec), append(bufs, b)
		case rec.typ == recState && sp == nil && h.flags&flagState != 0 && rec.seq == 0 && rec.codec == codecRaw:
			sp = b
		case rec.typ == recTrailer && rec.seq == 0 && len(b) == trailerSize:
			if h.flags&flagState != 0 && sp == nil {
				return nil, nil, nil, tr, fmt.Errorf("trailer where the device state belongs: %w", ErrOrder)
			}
			tr = parseTrailer(b)
			d.putBuf(b)
			switch {
			case tr.epoch != h.epoch:
				return nil, nil, nil, tr, fmt.Errorf("trailer of epoch %d in checkpoint %d: %w", tr.epoch, h.epoch, ErrOrder)
			case tr.crc != crc:
				return nil, nil, nil, tr, fmt.Errorf("checkpoint checksum %08x, want %08x: %w", crc, tr.crc, ErrCorrupt)
			case tr.chunks != uint32(len(recs)):
				return nil, nil, nil, tr, fmt.Errorf("%d chunks, trailer says %d: %w", len(recs), tr.chunks, ErrOrder)
			}
			return recs, bufs, sp, tr, nil
		case rec.typ == recChunk || rec.typ == recState || rec.typ == recTrailer:
			return nil, nil, nil, tr, fmt.Errorf("record type %d seq %d after %d chunks: %w", rec.typ, rec.seq, len(recs), ErrOrder)
		default:
			return nil, nil, nil, tr, fmt.Errorf("record type %d: %w", rec.typ, ErrCorrupt)
		}
	}
}

// checkChunks returns the first chunk error, then checks that chunks are in
// ascending page order and add up to the trailer's page count.
func (d *Decoder) checkChunks(s *Staged, errs []error, tr trailer) error {
	for i, err := range errs {
		if err != nil {
			return fmt.Errorf("chunk %d: %w", i, err)
		}
	}
	pages := 0
	for i := range s.chunks {
		c := &s.chunks[i]
		if i > 0 && c.first <= s.chunks[i-1].last {
			return fmt.Errorf("chunk %d starts at page %d, not after %d: %w", i, c.first, s.chunks[i-1].last, ErrOrder)
		}
		pages += c.pages
	}
	if pages != int(tr.pages) {
		return fmt.Errorf("%d pages in chunks, trailer says %d: %w", pages, tr.pages, ErrCorrupt)
	}
	return nil
}

// parallel runs fn(0..n-1) on up to Workers goroutines.
func (d *Decoder) parallel(n int, fn func(int)) {
	nw := min(d.cfg.Workers, n)
	if nw <= 1 {
		for i := 0; i < n; i++ {
			fn(i)
		}
		return
	}
	var next atomic.Int64
	var wg sync.WaitGroup
	for w := 0; w < nw; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := int(next.Add(1) - 1); i < n; i = int(next.Add(1) - 1) {
				fn(i)
			}
		}()
	}
	wg.Wait()
}
