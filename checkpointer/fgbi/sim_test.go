// SPDX-License-Identifier: Apache-2.0

package fgbi

import (
	"encoding/binary"
	"math/rand/v2"
)

// guest is a simulated guest memory with a dirty log, mutated the way real
// workloads are: sparse byte and word writes, zeroed pages, copied blocks and
// pages (memmove, fork, page cache), counters, and fresh random data.
type guest struct {
	mem   []byte
	dirty map[uint64]bool
	rng   *rand.Rand
	state []byte
}

func newGuest(pages int, seed uint64) *guest {
	g := &guest{mem: make([]byte, pages*PageSize), dirty: map[uint64]bool{}, rng: rand.New(rand.NewPCG(seed, 7))}
	// Half the pages hold text-like data, a quarter random, a quarter zero.
	for p := 0; p < pages; p++ {
		pg := g.page(uint64(p))
		switch p % 4 {
		case 0, 1:
			for i := range pg {
				pg[i] = "abcdefgh \n01234567"[g.rng.IntN(18)]
			}
		case 2:
			for i := 0; i < len(pg); i += 8 {
				binary.LittleEndian.PutUint64(pg[i:], g.rng.Uint64())
			}
		}
		g.dirty[uint64(p)] = true
	}
	g.state = make([]byte, 3000+g.rng.IntN(2000))
	for i := range g.state {
		g.state[i] = byte(g.rng.IntN(256))
	}
	return g
}

func (g *guest) pages() uint64         { return uint64(len(g.mem) / PageSize) }
func (g *guest) page(p uint64) []byte  { return g.mem[p*PageSize : (p+1)*PageSize] }
func (g *guest) touch(p uint64) []byte { g.dirty[p] = true; return g.page(p) }
func (g *guest) randPage() uint64      { return g.rng.Uint64N(g.pages()) }
func (g *guest) hot(n uint64) uint64   { return g.rng.Uint64N(min(n, g.pages())) }
func (g *guest) off(align int) int     { return g.rng.IntN(PageSize/align) * align }

// step applies n random mutations, mostly to a hot set of pages.
func (g *guest) step(n int) {
	for i := 0; i < n; i++ {
		p := g.hot(16)
		if g.rng.IntN(4) == 0 {
			p = g.randPage()
		}
		switch g.rng.IntN(10) {
		case 0, 1, 2: // sparse byte writes
			pg := g.touch(p)
			for k := g.rng.IntN(8) + 1; k > 0; k-- {
				pg[g.off(1)] = byte(g.rng.Uint32())
			}
		case 3: // a counter
			pg := g.touch(p)
			o := g.off(8)
			binary.LittleEndian.PutUint64(pg[o:], binary.LittleEndian.Uint64(pg[o:])+1)
		case 4: // zero a page
			clear(g.touch(p))
		case 5: // copy a block within memory (duplicated content)
			src := g.page(g.randPage())
			o, so := g.off(64), g.off(64)
			copy(g.touch(p)[o:o+64], src[so:so+64])
		case 6: // move a whole page
			q := g.randPage()
			copy(g.touch(p), g.page(q))
		case 7: // a fresh random run
			pg := g.touch(p)
			o := g.off(16)
			end := min(PageSize, o+g.rng.IntN(600))
			for k := o; k < end; k++ {
				pg[k] = byte(g.rng.Uint32())
			}
		case 8: // dirty but unchanged (over-reported by the hypervisor)
			g.touch(p)
		case 9: // the same bytes written twice in one page (duplicated block)
			pg := g.touch(p)
			a, b := g.off(64), g.off(64)
			copy(pg[b:b+64], pg[a:a+64])
		}
	}
	for k := g.rng.IntN(4); k > 0; k-- {
		g.state[g.rng.IntN(len(g.state))]++
	}
	if g.rng.IntN(8) == 0 {
		g.state = append(g.state, 1, 2, 3)
	}
}

// harvest returns and clears the dirty set: ascending pfns and a copy of
// their contents, as a driver would hand them to Encode.
func (g *guest) harvest() ([]uint64, []byte) {
	var pfns []uint64
	for p := uint64(0); p < g.pages(); p++ {
		if g.dirty[p] {
			pfns = append(pfns, p)
		}
	}
	clear(g.dirty)
	data := make([]byte, 0, len(pfns)*PageSize)
	for _, p := range pfns {
		data = append(data, g.page(p)...)
	}
	return pfns, data
}
