// SPDX-License-Identifier: Apache-2.0

package fgbi

// shadow is the encoder's bounded cache of hot pages: for every cached page
// it holds exactly the bytes the backup's replica holds (the last sent copy).
// It gives exact change detection, the delta base, and the content that
// confirms a sharing candidate. Eviction is CLOCK: a page dirtied since the
// hand last passed it survives one more turn.
type shadow struct {
	mem   []byte   // slots * PageSize
	owner []uint64 // pfn+1 held by each slot, 0 = free
	ref   []bool   // CLOCK reference bit
	stale []bool   // the page changed while cached: its fingerprints are old
	slot  []int32  // per guest page: slot index, -1 when not cached
	hand  int
	// rehash brings fingerprints up to date with content, the backup's
	// copy of pfn from byte off on. It is called with a stale page's last
	// copy as it leaves the cache, and with blocks sent for a page that
	// left the cache earlier in the same commit: without it a block changed
	// back to an older value would go unseen.
	rehash func(pfn uint64, off int, content []byte)
}

func newShadow(pages uint64, slots int) *shadow {
	s := &shadow{
		mem:   make([]byte, slots*PageSize),
		owner: make([]uint64, slots),
		ref:   make([]bool, slots),
		stale: make([]bool, slots),
		slot:  make([]int32, pages),
	}
	for i := range s.slot {
		s.slot[i] = -1
	}
	// Fault the cache in now, not page by page while checkpoints are
	// being encoded: it is a fixed, configured budget.
	for i := 0; i < len(s.mem); i += PageSize {
		s.mem[i] = 0
	}
	return s
}

// page returns the cached copy of pfn, or nil.
func (s *shadow) page(pfn uint64) []byte {
	i := s.slot[pfn]
	if i < 0 {
		return nil
	}
	return s.mem[int(i)*PageSize : (int(i)+1)*PageSize]
}

// store records content as the backup's copy of pfn from byte off on,
// inserting the page (and evicting a cold one) when it is not cached yet; a
// page new to the cache must be stored whole. fresh says the page's
// fingerprints match content; otherwise they are recomputed on eviction.
func (s *shadow) store(pfn uint64, off int, content []byte, fresh bool) {
	if len(s.owner) == 0 {
		return
	}
	i := s.slot[pfn]
	if i < 0 {
		if off != 0 || len(content) != PageSize {
			// Evicted earlier in this commit, with fingerprints computed
			// from the older copy: a partial copy is useless here, but
			// the fingerprints of these blocks must be brought forward.
			if s.rehash != nil {
				s.rehash(pfn, off, content)
			}
			return
		}
		i = int32(s.victim())
		if old := s.owner[i]; old != 0 {
			s.slot[old-1] = -1
			if s.stale[i] && s.rehash != nil {
				s.rehash(old-1, 0, s.mem[int(i)*PageSize:(int(i)+1)*PageSize])
			}
		}
		s.owner[i] = pfn + 1
		s.slot[pfn] = i
	}
	s.ref[i] = true
	s.stale[i] = !fresh
	copy(s.mem[int(i)*PageSize+off:(int(i)+1)*PageSize], content)
}

// victim advances the CLOCK hand to a slot to reuse; it clears at most one
// full turn of reference bits, so it always ends within two turns.
func (s *shadow) victim() int {
	for {
		i := s.hand
		s.hand++
		if s.hand == len(s.owner) {
			s.hand = 0
		}
		if s.owner[i] == 0 || !s.ref[i] {
			return i
		}
		s.ref[i] = false
	}
}

// reset forgets every cached page.
func (s *shadow) reset() {
	for i, o := range s.owner {
		if o != 0 {
			s.slot[o-1] = -1
		}
		s.owner[i] = 0
		s.ref[i] = false
		s.stale[i] = false
	}
	s.hand = 0
}

// index is the bounded content index: a direct-mapped table from a block's
// 64-bit hash to a block of a shadow-cached page that had that content when
// it was inserted. Entries go stale when the page changes or leaves the
// cache; every hit is confirmed against the shadow copy before use, so a
// stale or colliding entry costs one comparison, never a wrong reference.
// One entry is a single word (hash tag << 32 | block+1), so a lookup costs
// at most one cache miss.
type index struct {
	ent  []uint64
	mask uint64
}

// indexSize is the number of entries: a quarter of the blocks the shadow
// cache holds, rounded up to a power of two (2 MiB for the default 64 MiB
// cache at 64 B blocks). Most sharing is zero blocks and in-chunk
// duplicates, which need no entry; a bigger table mostly adds cache misses.
func indexSize(c Config) int {
	want := int(min(uint64(c.cachePages()), c.pages())) * c.blocksPerPage() / 16
	if want == 0 {
		return 0
	}
	n := 1
	for n < want {
		n <<= 1
	}
	return n
}

func newIndex(n int) *index {
	if n == 0 {
		return &index{}
	}
	return &index{ent: make([]uint64, n), mask: uint64(n - 1)}
}

func (x *index) put(h uint64, blk uint64) {
	if len(x.ent) == 0 {
		return
	}
	x.ent[h&x.mask] = h>>32<<32 | (blk+1)&0xffffffff
}

// get returns the candidate block number for h.
func (x *index) get(h uint64) (uint64, bool) {
	if len(x.ent) == 0 {
		return 0, false
	}
	e := x.ent[h&x.mask]
	if e == 0 || e>>32 != h>>32 || uint32(e) == 0 {
		return 0, false
	}
	return uint64(uint32(e)) - 1, true
}

func (x *index) reset() { clear(x.ent) }
