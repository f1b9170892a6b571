// SPDX-License-Identifier: Apache-2.0

package fgbi

import (
	"fmt"
	"io"
	"sync"
	"sync/atomic"

	"github.com/klauspost/compress/s2"
	"github.com/zeebo/xxh3"
)

// Stats describes one encoded checkpoint.
type Stats struct {
	Pages         int   // dirty pages given to Encode
	SentPages     int   // pages with at least one changed block
	ChangedBlocks int   // blocks that differed from the backup's copy
	ZeroBlocks    int   // changed blocks sent as zero runs
	SharedBlocks  int   // changed blocks sent as references
	DeltaBlocks   int   // changed blocks sent as a delta against the replica
	LiteralBytes  int   // literal block bytes before S2
	StateBytes    int   // wire bytes of the device-state record
	WireBytes     int64 // total bytes written
}

func (s *Stats) add(o Stats) {
	s.SentPages += o.SentPages
	s.ChangedBlocks += o.ChangedBlocks
	s.ZeroBlocks += o.ZeroBlocks
	s.SharedBlocks += o.SharedBlocks
	s.DeltaBlocks += o.DeltaBlocks
	s.LiteralBytes += o.LiteralBytes
}

// Encoder produces checkpoints. It remembers what the backup holds (block
// fingerprints, the shadow cache, the content index and the last device
// state), so checkpoints must reach the backup in order; Reset after any
// loss. An Encoder is not safe for concurrent use.
type Encoder struct {
	cfg     Config
	bpp     int
	hashes  []uint32 // per block: low 32 bits of xxh3 of the last sent content
	known   []uint8  // per page: 1 when the backup holds it and hashes are valid
	sh      *shadow
	idx     *index
	state   []byte // last device state sent, nil if none
	broken  bool   // a write failed: the backup's content is unknown
	sample  int    // look up one block in sample for sharing (see Encoder.sampled)
	dsample int    // try a delta on one page in dsample
	rot     uint64 // rotates the sampled set every checkpoint
	work    []*worker
	outs    []*chunkOut
	mu      sync.Mutex
	pool    []*chunkBufs // payload buffers, at most two batches' worth
}

// NewEncoder returns an encoder for cfg. Its memory is MemoryOverhead(cfg).
func NewEncoder(cfg Config) (*Encoder, error) {
	c, err := cfg.normalize()
	if err != nil {
		return nil, err
	}
	slots := c.cachePages()
	if uint64(slots) > c.pages() {
		slots = int(c.pages())
	}
	e := &Encoder{
		cfg:    c,
		bpp:    c.blocksPerPage(),
		hashes: make([]uint32, c.pages()*uint64(c.blocksPerPage())),
		known:  make([]uint8, c.pages()),
		sh:     newShadow(c.pages(), slots),
		idx:    newIndex(indexSize(c)),
	}
	e.sh.rehash = e.rehash
	for i := 0; i < c.Workers; i++ {
		e.work = append(e.work, newWorker(c))
	}
	return e, nil
}

// rehash sets the fingerprints of the blocks of pfn that content (starting
// at byte off, block-aligned) holds on the backup. While a page is cached
// its changes are found by exact comparison and its fingerprints are not
// maintained; they are brought up to date when it leaves the cache.
func (e *Encoder) rehash(pfn uint64, off int, content []byte) {
	bs := e.cfg.BlockSize
	hs := e.hashes[pfn*uint64(e.bpp) : (pfn+1)*uint64(e.bpp)]
	for b := 0; b < len(content)/bs; b++ {
		hs[off/bs+b] = uint32(xxh3.Hash(content[b*bs : (b+1)*bs]))
	}
}

// Reset forgets what the backup holds: the next Encode sends every block of
// every page it is given, and the full device state.
func (e *Encoder) Reset() {
	clear(e.known)
	e.sh.reset()
	e.idx.reset()
	e.state = nil
	e.broken = false
}

// Encode writes one complete checkpoint for epoch to w. pfns are ascending,
// unique and below MemSize/PageSize; data holds their contents, PageSize
// bytes each; state may be nil. Chunks are encoded in parallel batches and
// written as each batch completes, so the encoder's memory does not grow
// with the dirty set. On a write error the encoder resets itself on the
// next call, since the backup's content is then unknown.
func (e *Encoder) Encode(w io.Writer, epoch uint64, pfns []uint64, data []byte, state []byte) (Stats, error) {
	st := Stats{Pages: len(pfns)}
	if err := e.check(pfns, data, state); err != nil {
		return st, err
	}
	if e.broken {
		e.Reset()
	}
	h := header{epoch: epoch, memSize: e.cfg.MemSize, blockSize: uint32(e.cfg.BlockSize)}
	var sp []byte
	if state != nil {
		h.flags |= flagState
		sp = encodeState(e.state, state, e.cfg.Compression)
	}
	rw := &recordWriter{w: w}
	e.broken = true
	tr, err := e.chunks(rw, h, pfns, data, &st)
	if err == nil && sp != nil {
		err = rw.record(record{typ: recState, rawLen: uint32(len(sp))}, sp)
	}
	if err == nil {
		err = rw.trailer(tr)
	}
	st.WireBytes = rw.n
	if err != nil {
		return st, err
	}
	e.broken = false
	if sp != nil {
		st.StateBytes = len(sp) + recordSize
		e.state = append(e.state[:0], state...)
	}
	e.commit(pfns, data, len(e.outs[:tr.chunksIn]))
	return st, nil
}

// chunks writes the header and the chunk records, encoding batches of
// chunks in parallel, and adapts the sampling for the next checkpoint.
func (e *Encoder) chunks(rw *recordWriter, h header, pfns []uint64, data []byte, st *Stats) (trailer, error) {
	tr := trailer{epoch: h.epoch}
	if err := rw.write(h.marshal()); err != nil {
		return tr, err
	}
	nch := (len(pfns) + ChunkPages - 1) / ChunkPages
	tr.chunksIn = nch
	for len(e.outs) < nch {
		e.outs = append(e.outs, &chunkOut{})
	}
	batch := batchChunks
	var lookups, hits, tries, wins int
	for lo := 0; lo < nch; lo += batch {
		hi := min(lo+batch, nch)
		e.parallel(hi-lo, func(wk *worker, i int) {
			i += lo
			plo, phi := i*ChunkPages, min((i+1)*ChunkPages, len(pfns))
			wk.encodeChunk(e, e.outs[i], e.getBufs(), pfns[plo:phi], data[plo*PageSize:phi*PageSize])
		})
		for _, o := range e.outs[lo:hi] {
			st.add(o.stats)
			lookups, hits, tries, wins = lookups+o.lookups, hits+o.hits, tries+o.deltaTries, wins+o.deltaWins
			// Safe before the checkpoint is complete: a hit is confirmed
			// against the shadow, which still holds the pre-checkpoint
			// content the decoder resolves references against.
			for _, in := range o.bufs.ins {
				e.idx.put(in.hash, in.blk)
			}
			if o.pages > 0 {
				err := rw.record(record{typ: recChunk, codec: o.codec, seq: tr.chunks, rawLen: uint32(len(o.bufs.raw))}, o.wire())
				if err != nil {
					return tr, err
				}
				tr.chunks++
				tr.pages += uint32(o.pages)
			}
			e.putBufs(o.bufs)
			o.bufs = nil
		}
	}
	// Counts made while sampling stand for sample times as many.
	ns, nd := 1, 1
	if lookups*max(e.sample, 1) >= minLookups && hits*missRatio < lookups {
		ns = shareSample
	}
	if tries*max(e.dsample, 1) >= minDeltaTries && wins*4 < tries {
		nd = shareSample
	}
	e.sample, e.dsample = ns, nd
	e.rot++
	return tr, nil
}

// getBufs returns a chunk's payload and insert buffers from the pool.
func (e *Encoder) getBufs() *chunkBufs {
	e.mu.Lock()
	defer e.mu.Unlock()
	if n := len(e.pool); n > 0 {
		b := e.pool[n-1]
		e.pool = e.pool[:n-1]
		b.raw, b.enc, b.ins = b.raw[:0], b.enc[:0], b.ins[:0]
		return b
	}
	return &chunkBufs{}
}

// putBufs returns b to the pool, which keeps at most two batches' worth.
func (e *Encoder) putBufs(b *chunkBufs) {
	e.mu.Lock()
	if len(e.pool) < 2*batchChunks {
		e.pool = append(e.pool, b)
	}
	e.mu.Unlock()
}

// check validates Encode's arguments.
func (e *Encoder) check(pfns []uint64, data, state []byte) error {
	if len(data) != len(pfns)*PageSize {
		return fmt.Errorf("%d data bytes for %d pages: %w", len(data), len(pfns), ErrInput)
	}
	if len(pfns) > 1<<31 || len(state) > MaxStateSize {
		return fmt.Errorf("%d pages, %d state bytes: %w", len(pfns), len(state), ErrTooLarge)
	}
	n := e.cfg.pages()
	for i, p := range pfns {
		if p >= n {
			return fmt.Errorf("page %d beyond %d pages: %w", p, n, ErrRange)
		}
		if i > 0 && p <= pfns[i-1] {
			return fmt.Errorf("page %d after %d: not ascending: %w", p, pfns[i-1], ErrInput)
		}
	}
	return nil
}

// commit records, once the checkpoint is written, the backup's new copies:
// every sent page enters the shadow cache (CLOCK keeps the ones sent again
// and again) and cached pages get their changed blocks.
func (e *Encoder) commit(pfns []uint64, data []byte, nch int) {
	if len(e.sh.owner) == 0 {
		return
	}
	for i, o := range e.outs[:nch] {
		base := i * ChunkPages
		bs := e.cfg.BlockSize
		for _, sp := range o.cache {
			p := base + int(sp.page)
			lo, hi := int(sp.blk)*bs, int(sp.blk+sp.count)*bs
			e.sh.store(pfns[p], lo, data[p*PageSize+lo:p*PageSize+hi], sp.fresh)
		}
	}
}

// parallel runs fn for chunks 0..n-1 on up to Workers goroutines.
func (e *Encoder) parallel(n int, fn func(*worker, int)) {
	nw := min(len(e.work), n)
	if nw <= 1 {
		for i := 0; i < n; i++ {
			fn(e.work[0], i)
		}
		return
	}
	var next atomic.Int64
	var wg sync.WaitGroup
	for _, wk := range e.work[:nw] {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := int(next.Add(1) - 1); i < n; i = int(next.Add(1) - 1) {
				fn(wk, i)
			}
		}()
	}
	wg.Wait()
}

// batchChunks is how many chunks are encoded in parallel before they are
// written. It is a constant, not a multiple of Workers, because the index
// learns each batch's blocks before the next batch: the output then does not
// depend on the number of workers.
const batchChunks = 16

// Adaptive sharing: when fewer than 1 in missRatio of at least minLookups
// lookups hit, the next checkpoint looks up only 1 block in shareSample.
const (
	minLookups = 1024
	// Adaptive delta: when fewer than 1 in 4 of at least minDeltaTries
	// attempts win, the next checkpoint tries 1 page in shareSample.
	minDeltaTries = 64
	missRatio     = 64
	shareSample   = 16
)

// chunkBufs are a chunk's buffers, pooled: its payload (raw, and S2 in enc
// when codec is codecS2) and its content-index inserts.
type chunkBufs struct {
	raw, enc []byte
	ins      []insert
}

// chunkOut is one chunk's encoded record and the updates it implies.
type chunkOut struct {
	bufs       *chunkBufs
	codec      uint8
	pages      int
	stats      Stats
	lookups    int    // sharing lookups made
	hits       int    // and how many found a reference
	deltaTries int    // pages where a delta was tried
	deltaWins  int    // and where it won
	cache      []span // blocks to store in the shadow: whole pages new to it, changed blocks of cached ones
}

type insert struct{ hash, blk uint64 }

// span is blocks [blk, blk+count) of page number page within a chunk;
// fresh says the page's fingerprints were recomputed this epoch.
type span struct {
	page, blk, count int32
	fresh            bool
}

func (o *chunkOut) wire() []byte {
	if o.codec == codecS2 {
		return o.bufs.enc
	}
	return o.bufs.raw
}

// compress picks S2 for the payload when it saves at least 1/32.
func (o *chunkOut) compress() {
	o.codec = codecRaw
	b := o.bufs
	n := s2.MaxEncodedLen(len(b.raw))
	if cap(b.enc) < n {
		b.enc = make([]byte, n)
	}
	b.enc = s2.Encode(b.enc[:n], b.raw)
	if len(b.enc) < len(b.raw)-len(b.raw)/32 {
		o.codec = codecS2
	}
}
