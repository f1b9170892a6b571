// SPDX-License-Identifier: Apache-2.0

package sim

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"math/bits"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/resilire/resilire/checkpointer"

	"github.com/resilire/resilire/checkpointer/wire"
)

// Config configures a simulated guest.
type Config struct {
	// Name is the VM name.
	Name string
	// MemSize is the guest memory in bytes (rounded down to pages).
	MemSize uint64
	// Seed makes the write pattern reproducible.
	Seed uint64
	// WritesPerMs is how many 64-byte writes the workload makes per
	// millisecond of run time; 0 means an idle guest.
	WritesPerMs int
	// HotPages bounds the pages the workload writes to (its working set);
	// 0 means the whole memory.
	HotPages uint64
}

// Domain is an in-process guest for tests and benchmarks: plain memory
// and a workload goroutine that writes 64-byte blocks at pages chosen by a
// seeded generator. The sequence of writes depends only on the seed, so a
// step count in the saved state pins the guest's memory exactly.
type Domain struct {
	cfg  Config
	mem  []byte
	mu   sync.Mutex // guards everything below; the workload holds it per write
	cond *sync.Cond
	// paused stops the workload; dirty is the dirty bitmap.
	paused  bool
	tracked bool
	dirty   []uint64
	rng     *rand.Rand
	pcg     *rand.PCG
	step    uint64
	stop    chan struct{}
	done    chan struct{}
	started bool
}

// NewDomain allocates the guest memory and fills it deterministically;
// call Start to run the workload.
func NewDomain(cfg Config) *Domain {
	pages := cfg.MemSize / checkpointer.PageSize
	cfg.MemSize = pages * checkpointer.PageSize
	if cfg.HotPages == 0 || cfg.HotPages > pages {
		cfg.HotPages = pages
	}
	d := &Domain{cfg: cfg, mem: make([]byte, cfg.MemSize), dirty: make([]uint64, (pages+63)/64)}
	d.cond = sync.NewCond(&d.mu)
	d.pcg = rand.NewPCG(cfg.Seed, cfg.Seed^0x9e3779b97f4a7c15)
	d.rng = rand.New(d.pcg)
	// A recognisable, non-zero initial image: one seeded word per 64 bytes.
	fill := rand.New(rand.NewPCG(cfg.Seed, 1))
	for off := 0; off < len(d.mem); off += 64 {
		binary.LittleEndian.PutUint64(d.mem[off:], fill.Uint64())
	}
	return d
}

// restoreSim rebuilds a guest from replica memory and a saved state: the
// workload continues exactly where the checkpoint stopped it.
func restoreSim(cfg Config, mem []byte, state []byte) (*Domain, error) {
	if len(state) != 16 {
		return nil, fmt.Errorf("sim state: %d bytes, want 16: %w", len(state), wire.ErrCorrupt)
	}
	cfg.Seed = binary.LittleEndian.Uint64(state[0:])
	d := NewDomain(Config{Name: cfg.Name, MemSize: 0, Seed: cfg.Seed})
	d.cfg = cfg
	d.cfg.MemSize = uint64(len(mem))
	if d.cfg.HotPages == 0 || d.cfg.HotPages > d.cfg.MemSize/checkpointer.PageSize {
		d.cfg.HotPages = d.cfg.MemSize / checkpointer.PageSize
	}
	d.mem = mem
	d.dirty = make([]uint64, (d.cfg.MemSize/checkpointer.PageSize+63)/64)
	steps := binary.LittleEndian.Uint64(state[8:])
	for d.step < steps { // replay the generator, not the writes
		d.nextWrite()
	}
	return d, nil
}

// Start runs the workload until Stop.
func (d *Domain) Start() {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.started || d.cfg.WritesPerMs == 0 {
		return
	}
	d.started = true
	d.stop, d.done = make(chan struct{}), make(chan struct{})
	go d.run()
}

// Stop ends the workload goroutine and waits for it.
func (d *Domain) Stop() {
	d.mu.Lock()
	if !d.started {
		d.mu.Unlock()
		return
	}
	d.started = false
	close(d.stop)
	d.cond.Broadcast()
	d.mu.Unlock()
	<-d.done
}

func (d *Domain) run() {
	defer close(d.done)
	t := time.NewTicker(time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-d.stop:
			return
		case <-t.C:
		}
		for i := 0; i < d.cfg.WritesPerMs; i++ {
			d.mu.Lock()
			for d.paused {
				select {
				case <-d.stop:
					d.mu.Unlock()
					return
				default:
				}
				d.cond.Wait()
			}
			off := d.nextWrite()
			binary.LittleEndian.PutUint64(d.mem[off:], d.step)
			if d.tracked {
				pfn := off / checkpointer.PageSize
				d.dirty[pfn/64] |= 1 << (pfn % 64)
			}
			d.mu.Unlock()
		}
	}
}

// nextWrite draws the next write's byte offset and counts the step.
func (d *Domain) nextWrite() uint64 {
	d.step++
	pfn := d.rng.Uint64N(d.cfg.HotPages)
	return pfn*checkpointer.PageSize + d.rng.Uint64N(checkpointer.PageSize/64)*64
}

// Name implements checkpointer.Domain.
func (d *Domain) Name() string { return d.cfg.Name }

// MemorySize implements checkpointer.Domain.
func (d *Domain) MemorySize() uint64 { return d.cfg.MemSize }

// Pause implements checkpointer.Domain: once it returns no write is in progress.
func (d *Domain) Pause(context.Context) error {
	d.mu.Lock()
	d.paused = true
	d.mu.Unlock()
	return nil
}

// Resume implements checkpointer.Domain.
func (d *Domain) Resume(context.Context) error {
	d.mu.Lock()
	d.paused = false
	d.cond.Broadcast()
	d.mu.Unlock()
	return nil
}

// EnableDirtyLog implements checkpointer.Domain.
func (d *Domain) EnableDirtyLog(context.Context) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.tracked = true
	clear(d.dirty)
	return nil
}

// HarvestDirty implements checkpointer.Domain.
func (d *Domain) HarvestDirty(_ context.Context, dst []uint64) ([]uint64, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	for i, w := range d.dirty {
		for w != 0 {
			b := bits.TrailingZeros64(w)
			dst = append(dst, uint64(i*64+b))
			w &^= 1 << b
		}
		d.dirty[i] = 0
	}
	return dst, nil
}

// ReadPages implements checkpointer.Domain. While the guest runs it copies a page that
// may be changing; pre-copy relies on the dirty log to resend it.
func (d *Domain) ReadPages(pfns []uint64, dst []byte) error {
	if len(dst) != len(pfns)*checkpointer.PageSize {
		return fmt.Errorf("read pages: %d bytes for %d pages", len(dst), len(pfns))
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	for i, p := range pfns {
		if p >= d.cfg.MemSize/checkpointer.PageSize {
			return fmt.Errorf("read page %d: beyond %d pages", p, d.cfg.MemSize/checkpointer.PageSize)
		}
		copy(dst[i*checkpointer.PageSize:(i+1)*checkpointer.PageSize], d.mem[p*checkpointer.PageSize:(p+1)*checkpointer.PageSize])
	}
	return nil
}

// SaveState implements checkpointer.Domain: the seed and the workload step, 16 bytes.
func (d *Domain) SaveState(context.Context) ([]byte, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	st := make([]byte, 16)
	binary.LittleEndian.PutUint64(st[0:], d.cfg.Seed)
	binary.LittleEndian.PutUint64(st[8:], d.step)
	return st, nil
}

// Snapshot copies the whole memory and the step count atomically with
// respect to the workload (tests compare replicas against it).
func (d *Domain) Snapshot() (mem []byte, step uint64) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]byte(nil), d.mem...), d.step
}

// Close implements checkpointer.Domain.
func (d *Domain) Close() error {
	d.Stop()
	d.mu.Lock()
	d.tracked = false
	d.mu.Unlock()
	return nil
}

// Hash is the SHA-256 of the whole memory, taken atomically with respect
// to the workload (tests compare replicas against it).
func (d *Domain) Hash() [32]byte {
	d.mu.Lock()
	defer d.mu.Unlock()
	return sha256.Sum256(d.mem)
}

// Paused reports whether the guest is paused (tests hash memory only then).
func (d *Domain) Paused() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.paused
}
