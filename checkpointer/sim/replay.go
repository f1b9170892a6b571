// SPDX-License-Identifier: Apache-2.0

package sim

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"sync"

	"github.com/resilire/resilire/checkpointer"

	"github.com/resilire/resilire/checkpointer/wire"
)

// EpochSource yields recorded (or generated) epochs of guest writes: the
// pages changed during one epoch, ascending, and their new content.
type EpochSource interface {
	// Next returns the next epoch; io.EOF after the last one.
	Next() (pfns []uint64, data []byte, err error)
}

// ReplayDomain is a guest whose writes come from an EpochSource: while it
// "runs" (between Resume and Pause) it applies the next epoch's pages, so
// every checkpoint carries exactly one source epoch. The first epoch of the
// source is the initial image. When the source ends, open is called again
// and its first epoch is skipped, so replay loops for as long as needed.
type ReplayDomain struct {
	name string
	open func() (EpochSource, error)
	mem  []byte

	mu      sync.Mutex
	src     EpochSource
	running sync.WaitGroup // the goroutine applying an epoch while "running"
	dirty   []uint64
	epochs  uint64
	err     error
	paused  bool
}

// NewReplayDomain builds a guest of pages pages from open's source and
// applies its first epoch as the initial memory.
func NewReplayDomain(name string, pages uint64, open func() (EpochSource, error)) (*ReplayDomain, error) {
	d := &ReplayDomain{name: name, open: open, mem: make([]byte, pages*checkpointer.PageSize)}
	src, err := open()
	if err != nil {
		return nil, err
	}
	d.src = src
	pfns, data, err := src.Next()
	if err != nil {
		return nil, fmt.Errorf("replay initial image: %w", err)
	}
	if err := d.apply(pfns, data); err != nil {
		return nil, err
	}
	d.dirty = d.dirty[:0]
	return d, nil
}

func (d *ReplayDomain) apply(pfns []uint64, data []byte) error {
	if len(data) != len(pfns)*checkpointer.PageSize {
		return fmt.Errorf("replay epoch: %d bytes for %d pages: %w", len(data), len(pfns), wire.ErrCorrupt)
	}
	for i, p := range pfns {
		if p >= uint64(len(d.mem)/checkpointer.PageSize) {
			return fmt.Errorf("replay page %d beyond %d pages: %w", p, len(d.mem)/checkpointer.PageSize, wire.ErrCorrupt)
		}
		copy(d.mem[p*checkpointer.PageSize:(p+1)*checkpointer.PageSize], data[i*checkpointer.PageSize:(i+1)*checkpointer.PageSize])
	}
	d.dirty = append(d.dirty, pfns...)
	return nil
}

// step applies the next source epoch (the guest running for one epoch).
func (d *ReplayDomain) step() {
	d.mu.Lock()
	defer d.mu.Unlock()
	pfns, data, err := d.src.Next()
	if errors.Is(err, io.EOF) {
		if d.src, err = d.open(); err == nil {
			if _, _, err = d.src.Next(); err == nil { // skip the full image
				pfns, data, err = d.src.Next()
			}
		}
	}
	if err == nil {
		err = d.apply(pfns, data)
	}
	if err != nil && d.err == nil {
		d.err = err
	}
	d.epochs++
}

// Name implements checkpointer.Domain.
func (d *ReplayDomain) Name() string { return d.name }

// MemorySize implements checkpointer.Domain.
func (d *ReplayDomain) MemorySize() uint64 { return uint64(len(d.mem)) }

// Pause implements checkpointer.Domain: it waits for the running epoch to be written.
func (d *ReplayDomain) Pause(context.Context) error {
	d.running.Wait()
	d.mu.Lock()
	defer d.mu.Unlock()
	d.paused = true
	return d.err
}

// Resume implements checkpointer.Domain: the guest writes its next epoch meanwhile.
func (d *ReplayDomain) Resume(context.Context) error {
	d.mu.Lock()
	d.paused = false
	d.mu.Unlock()
	d.running.Add(1)
	go func() { defer d.running.Done(); d.step() }()
	return nil
}

// EnableDirtyLog implements checkpointer.Domain.
func (d *ReplayDomain) EnableDirtyLog(context.Context) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.dirty = d.dirty[:0]
	return nil
}

// HarvestDirty implements checkpointer.Domain (sorted, deduplicated).
func (d *ReplayDomain) HarvestDirty(_ context.Context, dst []uint64) ([]uint64, error) {
	d.running.Wait()
	d.mu.Lock()
	defer d.mu.Unlock()
	slicesSortUnique(&d.dirty)
	dst = append(dst, d.dirty...)
	d.dirty = d.dirty[:0]
	return dst, nil
}

// ReadPages implements checkpointer.Domain.
func (d *ReplayDomain) ReadPages(pfns []uint64, dst []byte) error {
	if len(dst) != len(pfns)*checkpointer.PageSize {
		return fmt.Errorf("read pages: %d bytes for %d pages", len(dst), len(pfns))
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	for i, p := range pfns {
		copy(dst[i*checkpointer.PageSize:(i+1)*checkpointer.PageSize], d.mem[p*checkpointer.PageSize:(p+1)*checkpointer.PageSize])
	}
	return nil
}

// SaveState implements checkpointer.Domain: the number of epochs replayed.
func (d *ReplayDomain) SaveState(context.Context) ([]byte, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return binary.LittleEndian.AppendUint64(nil, d.epochs), nil
}

// Hash is the SHA-256 of the whole memory (tests compare replicas with it).
func (d *ReplayDomain) Hash() [32]byte {
	d.mu.Lock()
	defer d.mu.Unlock()
	return sha256.Sum256(d.mem)
}

// Paused reports whether the guest is paused (tests hash memory only then).
func (d *ReplayDomain) Paused() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.paused
}

// Close implements checkpointer.Domain.
// WaitWritten waits until the guest has written the running epoch (a
// benchmark keeps that work outside its timer).
func (d *ReplayDomain) WaitWritten() { d.running.Wait() }

// Close implements checkpointer.Domain.
func (d *ReplayDomain) Close() error { d.running.Wait(); return nil }

// SyntheticSource generates epochs: Dirty distinct pages per epoch, drawn
// from the first Hot pages (all of them, in order, when Dirty == Hot),
// each with four 64-byte blocks rewritten. Deterministic from Seed. Its
// first epoch is the whole memory.
type SyntheticSource struct {
	Pages, Hot uint64
	Dirty      int
	Seed       uint64
	rng        *rand.Rand
	first      bool
	version    uint64
	pfns       []uint64
	data       []byte
}

// Open returns a fresh copy of the source, for ReplayDomain.
func (s SyntheticSource) Open() (EpochSource, error) {
	if s.Hot == 0 || s.Hot > s.Pages {
		s.Hot = s.Pages
	}
	if uint64(s.Dirty) > s.Hot {
		return nil, fmt.Errorf("synthetic source: %d dirty pages of %d hot", s.Dirty, s.Hot)
	}
	c := s
	c.rng, c.first = rand.New(rand.NewPCG(s.Seed, 99)), true
	return &c, nil
}

// Next implements EpochSource.
func (s *SyntheticSource) Next() ([]uint64, []byte, error) {
	s.version++
	if s.first {
		s.first = false
		s.pfns = allPages(s.pfns[:0], s.Pages)
	} else if uint64(s.Dirty) == s.Hot {
		s.pfns = allPages(s.pfns[:0], s.Hot)
	} else {
		set := make(map[uint64]struct{}, s.Dirty)
		for len(set) < s.Dirty {
			set[s.rng.Uint64N(s.Hot)] = struct{}{}
		}
		s.pfns = s.pfns[:0]
		for p := range set {
			s.pfns = append(s.pfns, p)
		}
		slicesSortUnique(&s.pfns)
	}
	if cap(s.data) < len(s.pfns)*checkpointer.PageSize {
		s.data = make([]byte, len(s.pfns)*checkpointer.PageSize)
	}
	s.data = s.data[:len(s.pfns)*checkpointer.PageSize]
	for i, p := range s.pfns {
		pg := s.data[i*checkpointer.PageSize : (i+1)*checkpointer.PageSize]
		for off := 0; off < checkpointer.PageSize; off += 8 { // stable base content per page
			binary.LittleEndian.PutUint64(pg[off:], p*0x9e3779b97f4a7c15+uint64(off))
		}
		for k := 0; k < 4; k++ { // this epoch's writes
			blk := s.rng.IntN(checkpointer.PageSize / 64)
			binary.LittleEndian.PutUint64(pg[blk*64:], s.version)
		}
	}
	return s.pfns, s.data, nil
}
