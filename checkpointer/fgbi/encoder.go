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
	e.sh.evicted = e.evicted
	for i := 0; i < c.Workers; i++ {
		e.work = append(e.work, newWorker(c))
	}
	return e, nil
}

// evicted brings the fingerprints of a page leaving the shadow cache up to
// date: while cached, its changes were found by exact comparison and its
// fingerprints were not maintained.
func (e *Encoder) evicted(pfn uint64, content []byte) {
	bs, bpp := e.cfg.BlockSize, uint64(e.bpp)
	hs := e.hashes[pfn*bpp : (pfn+1)*bpp]
	for b := range hs {
		hs[b] = uint32(xxh3.Hash(content[b*bs : (b+1)*bs]))
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
// bytes each; state may be nil. On a write error the encoder resets itself
// on the next call, since the backup's content is then unknown.
func (e *Encoder) Encode(w io.Writer, epoch uint64, pfns []uint64, data []byte, state []byte) (Stats, error) {
	st := Stats{Pages: len(pfns)}
	if err := e.check(pfns, data, state); err != nil {
		return st, err
	}
	if e.broken {
		e.Reset()
	}
	nch := (len(pfns) + ChunkPages - 1) / ChunkPages
	for len(e.outs) < nch {
		e.outs = append(e.outs, &chunkOut{})
	}
	e.parallel(nch, func(wk *worker, i int) {
		lo, hi := i*ChunkPages, min((i+1)*ChunkPages, len(pfns))
		wk.encodeChunk(e, e.outs[i], pfns[lo:hi], data[lo*PageSize:hi*PageSize])
	})
	h := header{epoch: epoch, memSize: e.cfg.MemSize, blockSize: uint32(e.cfg.BlockSize)}
	lookups, hits, tries, wins := 0, 0, 0, 0
	for _, o := range e.outs[:nch] {
		st.add(o.stats)
		lookups += o.lookups
		hits += o.hits
		tries += o.deltaTries
		wins += o.deltaWins
		if o.pages > 0 {
			h.nchunks++
			h.npages += uint32(o.pages)
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
	var sp []byte
	if state != nil {
		h.flags |= flagState
		sp = encodeState(e.state, state, e.cfg.Compression)
	}
	rw := &recordWriter{w: w}
	e.broken = true
	if err := e.write(rw, h, nch, sp); err != nil {
		st.WireBytes = rw.n
		return st, err
	}
	e.broken = false
	st.WireBytes = rw.n
	st.StateBytes = len(sp) + recordSize
	if state != nil {
		e.state = append(e.state[:0], state...)
	}
	e.commit(pfns, data, nch)
	return st, nil
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

func (e *Encoder) write(rw *recordWriter, h header, nch int, sp []byte) error {
	if err := rw.write(h.marshal()); err != nil {
		return err
	}
	seq := uint32(0)
	for _, o := range e.outs[:nch] {
		if o.pages == 0 {
			continue
		}
		if err := rw.record(record{typ: recChunk, codec: o.codec, seq: seq, rawLen: uint32(len(o.raw))}, o.wire()); err != nil {
			return err
		}
		seq++
	}
	if sp != nil {
		if err := rw.record(record{typ: recState, rawLen: uint32(len(sp))}, sp); err != nil {
			return err
		}
	}
	return rw.trailer(h.epoch)
}

// commit records, once the checkpoint is written, the backup's new copies:
// every sent page enters the shadow cache (CLOCK keeps the ones sent again
// and again), cached pages get their changed blocks, and the content index
// learns the blocks worth finding again.
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
		for _, in := range o.inserts {
			e.idx.put(in.hash, in.blk)
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

// chunkOut is one chunk's encoded record and the updates it implies.
type chunkOut struct {
	raw        []byte // uncompressed payload
	enc        []byte // S2 payload when codec is codecS2
	codec      uint8
	pages      int
	stats      Stats
	lookups    int    // sharing lookups made
	hits       int    // and how many found a reference
	deltaTries int    // pages where a delta was tried
	deltaWins  int    // and where it won
	cache      []span // blocks to store in the shadow: whole pages new to it, changed blocks of cached ones
	inserts    []insert
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
		return o.enc
	}
	return o.raw
}

// compress picks S2 for the payload when it saves at least 1/32.
func (o *chunkOut) compress() {
	o.codec = codecRaw
	n := s2.MaxEncodedLen(len(o.raw))
	if cap(o.enc) < n {
		o.enc = make([]byte, n)
	}
	o.enc = s2.Encode(o.enc[:n], o.raw)
	if len(o.enc) < len(o.raw)-len(o.raw)/32 {
		o.codec = codecS2
	}
}
