// SPDX-License-Identifier: Apache-2.0

package qemu

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"sync"

	"github.com/zeebo/xxh3"
	"golang.org/x/sys/unix"
)

// errNoBaseline is returned by a harvest before EnableDirtyLog.
var errNoBaseline = errors.New("qemu: dirty log not enabled")

// ramScanner finds changed pages of a shared RAM mapping by comparing a
// 64-bit xxh3 of every page with the one recorded at the previous harvest.
// Only the content at harvest time counts: a page written and restored
// between two harvests is not reported, correctly, since the backup already
// holds that content. A change is missed only on a 64-bit hash collision.
type ramScanner struct {
	mem     []byte
	pages   int
	hashes  []uint64 // allocated by the first baseline (hashing only)
	workers int
	parts   [][]uint64 // per-worker dirty lists, reused
	// fresh: the hashes describe memory as it is now, because they were
	// computed during the current pause. ReadPages then need not re-hash.
	fresh   bool
	enabled bool
}

// openRAM maps the RAM file read-only, shared, and prefaults it (the first
// pass over a fresh mapping otherwise pays ~2x in page faults).
func openRAM(path string, size uint64, workers int) (*ramScanner, error) {
	n, err := pageCount(size)
	if err != nil {
		return nil, err
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("guest RAM: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if uint64(fi.Size()) < size {
		return nil, fmt.Errorf("guest RAM %s: %d bytes, want %d", path, fi.Size(), size)
	}
	mem, err := unix.Mmap(int(f.Fd()), 0, int(size), unix.PROT_READ, unix.MAP_SHARED|unix.MAP_POPULATE)
	if err != nil {
		return nil, fmt.Errorf("mmap %s: %w", path, err)
	}
	if workers <= 0 {
		workers = runtime.GOMAXPROCS(0)
	}
	return &ramScanner{mem: mem, pages: n, workers: workers, parts: make([][]uint64, workers)}, nil
}

func (s *ramScanner) newPause() { s.fresh = false }

// baseline hashes every page.
func (s *ramScanner) baseline(paused bool) {
	if s.hashes == nil {
		s.hashes = make([]uint64, s.pages)
	}
	s.scan(func(pfn int, h uint64) bool { s.hashes[pfn] = h; return false })
	s.enabled, s.fresh = true, paused
}

// harvest appends changed pages to dst in ascending order and records
// their hashes.
func (s *ramScanner) harvest(dst []uint64, paused bool) ([]uint64, error) {
	if !s.enabled {
		return dst, errNoBaseline
	}
	s.scan(func(pfn int, h uint64) bool {
		if s.hashes[pfn] == h {
			return false
		}
		s.hashes[pfn] = h
		return true
	})
	for _, p := range s.parts {
		dst = append(dst, p...)
	}
	s.fresh = paused
	return dst, nil
}

// scan calls visit for every page with its hash, split into contiguous
// ranges, one per worker; pages for which visit returns true are
// collected into s.parts (ascending within each range).
func (s *ramScanner) scan(visit func(pfn int, h uint64) bool) {
	n := s.pages
	per := (n + s.workers - 1) / s.workers
	var wg sync.WaitGroup
	for w := 0; w < s.workers; w++ {
		lo, hi := w*per, min((w+1)*per, n)
		s.parts[w] = s.parts[w][:0]
		if lo >= hi {
			continue
		}
		wg.Add(1)
		go func(w, lo, hi int) {
			defer wg.Done()
			part := s.parts[w]
			for pfn := lo; pfn < hi; pfn++ {
				off := pfn * PageSize
				if visit(pfn, xxh3.Hash(s.mem[off:off+PageSize])) {
					part = append(part, uint64(pfn))
				}
			}
			s.parts[w] = part
		}(w, lo, hi)
	}
	wg.Wait()
}

// read copies pages. Unless the hashes were taken in this very pause, it
// re-hashes each copy so the baseline describes exactly what was copied
// (the backup's content): a page that changes after the copy then differs
// at the next harvest and is sent again.
func (s *ramScanner) read(pfns []uint64, dst []byte, paused bool) error {
	if len(dst) != len(pfns)*PageSize {
		return fmt.Errorf("read pages: dst is %d bytes, want %d", len(dst), len(pfns)*PageSize)
	}
	rehash := s.enabled && (!paused || !s.fresh)
	for i, pfn := range pfns {
		if pfn >= uint64(s.pages) {
			return fmt.Errorf("read pages: pfn %d beyond %d pages", pfn, s.pages)
		}
		page := dst[i*PageSize : (i+1)*PageSize]
		copy(page, s.mem[pfn*PageSize:(pfn+1)*PageSize])
		if rehash {
			s.hashes[pfn] = xxh3.Hash(page)
		}
	}
	return nil
}

func (s *ramScanner) close() error {
	if s.mem == nil {
		return nil
	}
	err := unix.Munmap(s.mem)
	s.mem = nil
	return err
}

// hashAll sets leaves[i] to the xxh3 of page i, in parallel (the scrub).
func (s *ramScanner) hashAll(leaves []uint64) error {
	if len(leaves) != s.pages {
		return fmt.Errorf("hash pages: %d leaves for %d pages", len(leaves), s.pages)
	}
	s.scan(func(pfn int, h uint64) bool { leaves[pfn] = h; return false })
	return nil
}
