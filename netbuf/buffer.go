// SPDX-License-Identifier: Apache-2.0

package netbuf

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"runtime"
	"sync"
	"time"

	"github.com/cilium/ebpf"
)

// DefaultMaxBytes is the default bound on held output per Buffer.
const DefaultMaxBytes = 64 << 20

// Errors returned by Buffer methods.
var (
	// ErrOpenEpoch means Release was asked for the epoch the port is still
	// stamping (or a later one): releasing it would leak output early.
	ErrOpenEpoch = errors.New("epoch is still open")
	// ErrClosed means the Buffer was closed.
	ErrClosed = errors.New("buffer closed")
)

// Options tunes a Buffer. The zero value is usable.
type Options struct {
	// MaxBytes bounds held output (frame bytes plus a small per-frame
	// overhead). Frames beyond it are dropped and counted, never released
	// early. 0 means DefaultMaxBytes.
	MaxBytes int64
	// Queues is the number of tap queues Release writes through, one
	// writer goroutine each. 0 means the port's TapQueues, at most one
	// per CPU.
	Queues int
	// NoPin leaves writer threads unpinned (see the ordering argument in
	// release.go; pinning is what makes per-flow order strict).
	NoPin  bool
	Logger *slog.Logger
}

// Stats are the Buffer's counters since New.
type Stats struct {
	Epoch        uint64 // open epoch, stamped on new output
	Committed    uint64 // last released epoch (valid if HasCommitted)
	HasCommitted bool
	HeldFrames   int64
	HeldBytes    int64  // charged bytes, compared with MaxBytes
	Held         uint64 // frames accepted into an arena
	HeldGSO      uint64 // of which GSO super-packets
	Released     uint64 // frames written to the tap
	ReleaseBytes uint64 // their frame bytes
	Stragglers   uint64 // frames of an already released epoch, written at once
	Dropped      uint64 // tail drops by the byte bound
	DropBytes    uint64
	Discarded    uint64 // frames dropped by Discard
	Malformed    uint64 // records rejected by the parser
	WriteErrors  uint64
	// TapDropped are held frames the injection tap dropped before netbuf
	// read them (path B, its queue full: the reader fell behind). Lost,
	// never leaked; the guest's TCP retransmits them.
	TapDropped uint64
	// Reinjected are released frames seen passing the guest port since
	// New. Released-Reinjected were lost between tap and port, are still
	// in flight, or met ModeBlock.
	Reinjected  uint64
	LastRelease time.Duration // wall time of the last Release's writes
	LastFrames  uint64        // frames written by the last Release
	LastCPU     time.Duration // CPU time its writer threads spent
	ReadErr     string        // why the reader stopped, if it did
}

// port is what a Buffer needs from a dataplane.Port.
type port interface {
	SetEpoch(e uint64) error
	Epoch() (uint64, error)
	CaptureRing() *ebpf.Map
	TapName() string
}

// source delivers captured frames to the Buffer (path A ring, path B tap).
type source interface {
	run(b *Buffer) error
	// drainClosing holds everything already queued as epoch e (path B).
	drainClosing(b *Buffer, e uint64) error
	close() error
}

// Buffer holds one port's output per epoch until Release. Its methods are
// safe for concurrent use; Advance and Release are meant to be called by
// one epoch loop.
type Buffer struct {
	log   *slog.Logger
	p     port
	src   source
	wr    *writers
	queue []*tapQueue
	steer io.Closer
	loss  *lossWatch // nil for test sources

	// wmu serializes everything that writes to the tap (Release,
	// stragglers) and everything that recycles arena memory (Discard,
	// WritePcap), so that releases never overtake each other.
	wmu sync.Mutex

	land landing // the reader's end of the arena memory

	mu           sync.Mutex
	ar           arenas
	cur          uint64 // open epoch
	committed    uint64
	hasCommitted bool
	maxBytes     int64
	st           Stats
	closed       bool

	monoToWall int64 // add to CLOCK_MONOTONIC ns to get Unix ns
	readerDone chan struct{}
}

// newBuffer builds a Buffer on a source and release fds and starts the
// reader goroutine.
func newBuffer(p port, src source, fds []int, opts Options) (*Buffer, error) {
	cur, err := p.Epoch()
	if err != nil {
		return nil, fmt.Errorf("read port epoch: %w", err)
	}
	b := &Buffer{
		log: opts.Logger, p: p, src: src, cur: cur,
		maxBytes:   opts.MaxBytes,
		wr:         newWriters(fds, !opts.NoPin),
		monoToWall: time.Now().UnixNano() - monotonicNow(),
		readerDone: make(chan struct{}),
	}
	if b.log == nil {
		b.log = slog.New(slog.DiscardHandler)
	}
	if b.maxBytes <= 0 {
		b.maxBytes = DefaultMaxBytes
	}
	go func() {
		defer close(b.readerDone)
		if err := src.run(b); err != nil {
			b.mu.Lock()
			b.st.ReadErr = err.Error()
			b.mu.Unlock()
		}
	}()
	return b, nil
}

func defaultQueues(n int) int {
	if n > 0 {
		return n
	}
	return min(runtime.NumCPU(), 4)
}

// Advance closes the open epoch e and returns it; the port stamps e+1 from
// now on. Call it while the guest is paused, so that no frame the guest
// sends after the checkpoint can carry e.
func (b *Buffer) Advance() (uint64, error) {
	b.mu.Lock()
	e, closed := b.cur, b.closed
	b.mu.Unlock()
	if closed {
		return 0, ErrClosed
	}
	if err := b.src.drainClosing(b, e); err != nil {
		return 0, err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := b.p.SetEpoch(e + 1); err != nil {
		return 0, fmt.Errorf("advance epoch %d: %w", e, err)
	}
	b.cur = e + 1
	b.log.Debug("epoch closed", "epoch", e)
	return e, nil
}

// Release writes every held frame of epochs <= e to the tap, in capture
// order (per flow, see release.go), and marks e committed: frames of
// epochs <= e read later are written at once. Call it only after the
// backup acknowledged checkpoint e.
func (b *Buffer) Release(e uint64) error {
	b.wmu.Lock()
	defer b.wmu.Unlock()
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return ErrClosed
	}
	if e >= b.cur {
		b.mu.Unlock()
		return fmt.Errorf("release epoch %d (open epoch %d): %w", e, b.cur, ErrOpenEpoch)
	}
	if b.hasCommitted && e <= b.committed {
		b.mu.Unlock()
		return nil
	}
	b.committed, b.hasCommitted = e, true
	list := b.ar.take(e)
	for _, a := range list {
		b.st.HeldFrames -= int64(len(a.frames))
		b.st.HeldBytes -= a.bytes
	}
	b.mu.Unlock()

	start := time.Now()
	res := b.wr.write(list)
	dur := time.Since(start)

	b.mu.Lock()
	b.ar.recycle(list)
	b.st.Released += res.frames
	b.st.ReleaseBytes += res.bytes
	b.st.WriteErrors += res.errors
	b.st.LastRelease, b.st.LastFrames, b.st.LastCPU = dur, res.frames, res.cpu
	b.mu.Unlock()
	b.log.Debug("released", "epoch", e, "bytes", res.bytes, "dur", dur)
	if res.err != nil {
		return fmt.Errorf("release epoch %d: %d frames lost: %w", e, res.errors, res.err)
	}
	return nil
}

// Discard drops every held frame (the backup took over, or this copy was
// demoted). Nothing is written.
func (b *Buffer) Discard() error {
	b.wmu.Lock()
	defer b.wmu.Unlock()
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return ErrClosed
	}
	list := b.ar.take(math.MaxUint64)
	for _, a := range list {
		b.st.Discarded += uint64(len(a.frames))
	}
	b.st.HeldFrames, b.st.HeldBytes = 0, 0
	b.ar.recycle(list)
	return nil
}

// Stats returns a snapshot of the counters.
func (b *Buffer) Stats() Stats {
	tapDropped, reinjected := b.loss.read() // syscalls: not under mu
	b.mu.Lock()
	defer b.mu.Unlock()
	s := b.st
	s.TapDropped, s.Reinjected = tapDropped, reinjected
	s.Epoch, s.Committed, s.HasCommitted = b.cur, b.committed, b.hasCommitted
	return s
}

// Close stops the reader and the writers and drops what is still held: a
// closed Buffer fails closed, it never flushes.
func (b *Buffer) Close() error {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return nil
	}
	b.closed = true
	b.mu.Unlock()
	// Stop the reader first, without holding wmu: it may be waiting for
	// wmu to write a straggler (it drops it once it sees closed).
	err := b.src.close()
	<-b.readerDone
	b.wmu.Lock() // wait for a Release in flight
	b.wr.close()
	b.wmu.Unlock()
	for _, q := range b.queue {
		err = errors.Join(err, q.close())
	}
	if b.steer != nil {
		err = errors.Join(err, b.steer.Close())
	}
	b.loss.close()
	return err
}
