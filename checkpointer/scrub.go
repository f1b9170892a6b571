// SPDX-License-Identifier: Apache-2.0

package checkpointer

import (
	"encoding/binary"
	"fmt"
	"runtime"
	"slices"
	"sync"
	"time"

	"github.com/zeebo/xxh3"

	"github.com/resilire/resilire/checkpointer/wire"
)

// The scrub: every ScrubEvery epochs the primary hashes all of guest
// memory during that epoch's pause (one xxh3 per page: the leaves; one
// hash per chunk of leaves) and sends the chunk hashes after the
// checkpoint's END. The backup, which applied that very checkpoint just
// before, hashes its replica the same way and answers with its leaves of
// the chunks that differ; the primary names the pages. A divergence is an
// alarm (log at error level, resilire_scrub_* metrics, "scrub" in
// /status) and the named pages are re-sent with the next checkpoint.
//
// A divergence means the dirty log missed a write (a writer the tracker
// cannot see), or the replica was changed behind the backup's back. Cost:
// one full-memory hash in one pause every ScrubEvery epochs on the
// primary (about 5 ms per 128 MiB on 2 cores), the same on the backup
// outside any pause, and 8 bytes per guest page on the primary while a
// scrub is outstanding.

// DefaultScrubEvery is the CLI's scrub period in epochs: every 10 s at the
// default 50 ms interval, so a silent divergence lasts seconds, not the VM's
// lifetime, while the extra full-memory hash hits 0.5 % of the pauses
// (outside p99).
const DefaultScrubEvery = 200

// scrubMaxNamed bounds the pages listed in status and logs.
const scrubMaxNamed = 64

// MemoryHasher is optionally implemented by a Domain that hashes its
// memory faster than ReadPages plus hashing (in place, in parallel):
// leaves[i] = xxh3 of page i. Called paused.
type MemoryHasher interface {
	HashPages(leaves []uint64) error
}

// ScrubStatus is the result of the last scrub.
type ScrubStatus struct {
	Epoch uint64    `json:"epoch"`
	At    time.Time `json:"at"`
	// Result is "ok" or "diverged".
	Result string `json:"result"`
	// Chunks that differed, of ChunkPages pages each.
	Chunks     int    `json:"diverged_chunks"`
	ChunkPages uint32 `json:"chunk_pages"`
	// Pages named as different (primary; the first scrubMaxNamed).
	Pages []uint64 `json:"pages,omitempty"`
	// PageCount is how many pages were named in all.
	PageCount int `json:"diverged_pages"`
}

// scrubChunkPages picks the chunk size: 512 pages (2 MiB) unless the chunk
// hashes of a large guest would not fit one SCRUB frame.
func scrubChunkPages(pages uint64) uint32 {
	cp := uint64(512)
	for (pages+cp-1)/cp*8+16 > wire.MaxScrubPayload {
		cp *= 2
	}
	return uint32(cp)
}

// HashLeaves sets leaves[i] to the xxh3 of page i of mem, in parallel.
func HashLeaves(mem []byte, leaves []uint64) {
	n := len(leaves)
	w := max(1, runtime.GOMAXPROCS(0))
	per := (n + w - 1) / w
	var wg sync.WaitGroup
	for lo := 0; lo < n; lo += per {
		hi := min(n, lo+per)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := lo; i < hi; i++ {
				leaves[i] = xxh3.Hash(mem[i*PageSize : (i+1)*PageSize])
			}
		}()
	}
	wg.Wait()
}

// chunkHashes hashes each run of cp leaves.
func chunkHashes(leaves []uint64, cp uint32) []uint64 {
	out := make([]uint64, 0, (len(leaves)+int(cp)-1)/int(cp))
	buf := make([]byte, 0, 8*int(cp))
	for lo := 0; lo < len(leaves); lo += int(cp) {
		buf = buf[:0]
		for _, l := range leaves[lo:min(len(leaves), lo+int(cp))] {
			buf = binary.LittleEndian.AppendUint64(buf, l)
		}
		out = append(out, xxh3.Hash(buf))
	}
	return out
}

// primaryScrub is the primary's side: the leaves of the outstanding scrub
// and the pages to re-send.
type primaryScrub struct {
	mu        sync.Mutex
	leaves    []uint64
	pending   uint64 // epoch of the outstanding scrub, 0 if none
	cp        uint32
	repair    []uint64
	repairAll bool
	last      *ScrubStatus
}

// scrubDue says whether epoch e (the n-th since start) is scrubbed.
func (p *Primary) scrubDue() bool {
	p.epochs++
	return p.cfg.ScrubEvery > 0 && p.epochs%uint64(p.cfg.ScrubEvery) == 0
}

// takeScrub hashes all memory while paused and returns the SCRUB payload.
func (p *Primary) takeScrub(e uint64) ([]byte, error) {
	pages := p.cfg.Domain.MemorySize() / PageSize
	sc := &p.scrub
	sc.mu.Lock()
	defer sc.mu.Unlock()
	if uint64(len(sc.leaves)) != pages {
		sc.leaves = make([]uint64, pages)
	}
	if h, ok := p.cfg.Domain.(MemoryHasher); ok {
		if err := h.HashPages(sc.leaves); err != nil {
			return nil, fmt.Errorf("scrub hash: %w", err)
		}
	} else {
		const step = 1024
		for lo := uint64(0); lo < pages; lo += step {
			pfns := p.pfns[:0]
			for pfn := lo; pfn < min(pages, lo+step); pfn++ {
				pfns = append(pfns, pfn)
			}
			p.pfns = pfns
			buf := p.pageBuf(len(pfns))
			if err := p.cfg.Domain.ReadPages(pfns, buf); err != nil {
				return nil, fmt.Errorf("scrub read: %w", err)
			}
			HashLeaves(buf, sc.leaves[lo:lo+uint64(len(pfns))])
		}
	}
	sc.cp = scrubChunkPages(pages)
	sc.pending = e
	return wire.ScrubMsg{Epoch: e, ChunkPages: sc.cp, Chunks: chunkHashes(sc.leaves, sc.cp)}.Marshal()
}

// onScrubReport names the diverged pages of the outstanding scrub, raises
// the alarm and queues the pages for the next checkpoint.
func (p *Primary) onScrubReport(r wire.ScrubReportMsg) {
	sc := &p.scrub
	sc.mu.Lock()
	defer sc.mu.Unlock()
	if r.Epoch != sc.pending || r.ChunkPages != sc.cp {
		p.log.Warn("scrub report for no outstanding scrub", "vm", p.cfg.Domain.Name(), "epoch", r.Epoch)
		return
	}
	sc.pending = 0
	st := &ScrubStatus{Epoch: r.Epoch, At: time.Now(), Result: "ok", Chunks: int(r.Diverged), ChunkPages: r.ChunkPages}
	var named []uint64
	for _, c := range r.Chunks {
		base := uint64(c.Index) * uint64(r.ChunkPages)
		for j, l := range c.Leaves {
			if pfn := base + uint64(j); pfn < uint64(len(sc.leaves)) && sc.leaves[pfn] != l {
				named = append(named, pfn)
			}
		}
	}
	p.m.ScrubDivergedPages.Set(float64(len(named)))
	if r.Diverged == 0 {
		p.m.Scrubs.WithLabelValues("ok").Inc()
		p.log.Debug("scrub: replica equals primary memory", "vm", p.cfg.Domain.Name(), "epoch", r.Epoch)
	} else {
		st.Result, st.PageCount, st.Pages = "diverged", len(named), named[:min(len(named), scrubMaxNamed)]
		p.m.Scrubs.WithLabelValues("diverged").Inc()
		p.log.Error("scrub: backup replica diverges from primary memory; re-sending the pages",
			"vm", p.cfg.Domain.Name(), "epoch", r.Epoch, "chunks", r.Diverged, "pages", st.Pages, "count", len(named))
		sc.repair = append(sc.repair, named...)
		// Chunks the report had no room for: re-send everything once.
		sc.repairAll = sc.repairAll || int(r.Diverged) > len(r.Chunks)
	}
	sc.last = st
}

// takeRepair merges the pages to re-send into a harvested dirty list
// (ascending, unique). It reports whether every page must be sent.
func (p *Primary) takeRepair(pfns []uint64) ([]uint64, bool) {
	sc := &p.scrub
	sc.mu.Lock()
	defer sc.mu.Unlock()
	all := sc.repairAll
	if len(sc.repair) > 0 {
		pfns = append(pfns, sc.repair...)
		slices.Sort(pfns)
		pfns = slices.Compact(pfns)
	}
	sc.repair, sc.repairAll = sc.repair[:0], false
	return pfns, all
}

// scrubStatus returns the last scrub's result, nil before the first.
func (p *Primary) scrubStatus() *ScrubStatus {
	p.scrub.mu.Lock()
	defer p.scrub.mu.Unlock()
	return p.scrub.last
}

// onScrub is the backup's side: compare the replica, as committed, with
// the primary's chunk hashes, raise the alarm and answer with its leaves
// of the chunks that differ.
func (b *Backup) onScrub(l *wire.Conn, payload []byte) error {
	m, err := wire.ParseScrub(payload)
	if err != nil {
		return err
	}
	b.mu.Lock()
	mem := b.cfg.Replica.Memory()
	pages := uint64(len(mem)) / PageSize
	if uint64(len(m.Chunks)) != (pages+uint64(m.ChunkPages)-1)/uint64(m.ChunkPages) {
		b.mu.Unlock()
		return fmt.Errorf("scrub: %d chunks of %d pages for %d pages: %w", len(m.Chunks), m.ChunkPages, pages, wire.ErrFrame)
	}
	if m.Epoch != b.committed {
		b.mu.Unlock()
		b.log.Warn("scrub of an epoch not committed here: ignored", "vm", b.cfg.VM, "epoch", m.Epoch, "committed", b.committed)
		return nil
	}
	leaves := make([]uint64, pages)
	HashLeaves(mem, leaves)
	b.mu.Unlock()
	mine := chunkHashes(leaves, m.ChunkPages)
	rep := wire.ScrubReportMsg{Epoch: m.Epoch, ChunkPages: m.ChunkPages}
	var ranges []string
	for i, h := range mine {
		if h == m.Chunks[i] {
			continue
		}
		rep.Diverged++
		lo := uint64(i) * uint64(m.ChunkPages)
		hi := min(pages, lo+uint64(m.ChunkPages))
		if len(rep.Chunks) < wire.ReportCapacity(m.ChunkPages) {
			lv := make([]uint64, m.ChunkPages) // a short last chunk is padded with zeros
			copy(lv, leaves[lo:hi])
			rep.Chunks = append(rep.Chunks, wire.ScrubChunk{Index: uint32(i), Leaves: lv})
		}
		if len(ranges) < scrubMaxNamed {
			ranges = append(ranges, fmt.Sprintf("%d-%d", lo, hi-1))
		}
	}
	st := &ScrubStatus{Epoch: m.Epoch, At: time.Now(), Result: "ok", Chunks: int(rep.Diverged), ChunkPages: m.ChunkPages}
	if rep.Diverged > 0 {
		st.Result = "diverged"
		b.m.Scrubs.WithLabelValues("diverged").Inc()
		b.log.Error("scrub: replica diverges from the primary's memory", "vm", b.cfg.VM, "epoch", m.Epoch,
			"chunks", rep.Diverged, "page_ranges", ranges)
	} else {
		b.m.Scrubs.WithLabelValues("ok").Inc()
	}
	b.m.ScrubDivergedChunks.Set(float64(rep.Diverged))
	b.mu.Lock()
	b.scrub = st
	b.mu.Unlock()
	rp, err := rep.Marshal()
	if err != nil {
		return err
	}
	return l.Write(wire.ScrubReport, rp, true)
}
