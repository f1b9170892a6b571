// SPDX-License-Identifier: Apache-2.0

package disk

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"sync"
	"sync/atomic"
)

// Export serves a disk image to the guest over NBD on a Unix socket and
// tracks the blocks each epoch writes. Guest writes go to the local image
// only: the backup gets them with the epoch's checkpoint.
type Export struct {
	f    *os.File
	size int64
	l    net.Listener
	log  *slog.Logger

	mu    sync.Mutex // guards the fields below and every write to f
	dirty *tracker
	// open is the last cut whose contents are not read yet (CutDeferred,
	// then Fill); frozen marks its blocks not read yet, and saved keeps the
	// cut-time contents of those the guest overwrote before Fill.
	open    *Delta
	frozen  *tracker
	saved   map[int64][]byte
	pending []cut  // cuts not acknowledged yet, oldest first
	acked   uint64 // last epoch acknowledged
	conns   map[net.Conn]struct{}
	closed  bool

	// maxEpochBytes, if positive, is the written data at which the export
	// asks for an early cut (pressure): it bounds what one epoch stages.
	maxEpochBytes int64
	pressure      chan struct{}

	inflight atomic.Int64
	stats    struct {
		writes, writeBytes, flushes, busyCuts atomic.Uint64
	}
	wg sync.WaitGroup
}

// cut is one epoch's extents, kept until its checkpoint is acknowledged.
type cut struct {
	epoch   uint64
	extents []Extent
}

// ExportStats counts what the guest did through the export.
type ExportStats struct {
	Writes, WriteBytes, Flushes uint64
	// BusyCuts counts cuts that found a request in progress: with QEMU
	// stopped (stop drains I/O) it must stay 0.
	BusyCuts uint64
	// InFlight is the number of requests being served now.
	InFlight int64
}

// NewExport opens image (read-write; its size must be a positive multiple
// of BlockSize) and serves it on a new Unix socket at socket (a stale
// socket file is replaced). logger nil discards.
func NewExport(image, socket string, logger *slog.Logger) (_ *Export, err error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	f, err := os.OpenFile(image, os.O_RDWR, 0)
	if err != nil {
		return nil, fmt.Errorf("open disk image: %w", err)
	}
	defer func() {
		if err != nil {
			f.Close()
		}
	}()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("stat disk image: %w", err)
	}
	if fi.Size() <= 0 || fi.Size()%BlockSize != 0 {
		return nil, fmt.Errorf("disk image %s: %d bytes: %w", image, fi.Size(), ErrSize)
	}
	if err := os.Remove(socket); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("remove stale socket: %w", err)
	}
	l, err := net.Listen("unix", socket)
	if err != nil {
		return nil, fmt.Errorf("listen %s: %w", socket, err)
	}
	x := &Export{f: f, size: fi.Size(), l: l, log: logger, dirty: newTracker(fi.Size()), frozen: newTracker(fi.Size()), pressure: make(chan struct{}, 1), conns: map[net.Conn]struct{}{}}
	x.wg.Add(1)
	go x.accept()
	return x, nil
}

// Size is the image size in bytes.
func (x *Export) Size() int64 { return x.size }

// Stats returns the export's counters.
func (x *Export) Stats() ExportStats {
	return ExportStats{Writes: x.stats.writes.Load(), WriteBytes: x.stats.writeBytes.Load(),
		Flushes: x.stats.flushes.Load(), BusyCuts: x.stats.busyCuts.Load(), InFlight: x.inflight.Load()}
}

func (x *Export) accept() {
	defer x.wg.Done()
	for {
		c, err := x.l.Accept()
		if err != nil {
			return
		}
		x.mu.Lock()
		if x.closed {
			x.mu.Unlock()
			c.Close()
			return
		}
		x.conns[c] = struct{}{}
		x.mu.Unlock()
		x.wg.Add(1)
		go func() {
			defer x.wg.Done()
			if err := serveConn(c, x); err != nil {
				x.log.Warn("nbd connection ended", "err", err)
			}
			x.mu.Lock()
			delete(x.conns, c)
			x.mu.Unlock()
			c.Close()
		}()
	}
}

// Cut closes epoch e: it takes the blocks written since the previous cut
// and copies their current contents. Call it with the guest paused (QEMU
// stop drains in-flight requests, so no write straddles the cut).
func (x *Export) Cut(e uint64) (*Delta, error) {
	d, err := x.CutDeferred(e)
	if err != nil {
		return nil, err
	}
	return d, x.Fill(d)
}

// CutDeferred is Cut without the copy, which Fill makes later, once the
// guest runs again: the pause no longer grows with the data the epoch
// wrote. Until Fill, the export keeps the cut-time contents of any of
// those blocks the guest overwrites (copy-on-write, one block at a time).
// A previous cut not filled yet is filled first.
func (x *Export) CutDeferred(e uint64) (*Delta, error) {
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.inflight.Load() != 0 {
		x.stats.busyCuts.Add(1)
	}
	if x.open != nil {
		if err := x.fillLocked(x.open); err != nil {
			return nil, err
		}
	}
	d := &Delta{Epoch: e, Extents: x.dirty.take(nil)}
	for _, xt := range d.Extents {
		x.frozen.mark(xt.Off, xt.Len)
	}
	x.open = d
	x.pending = append(x.pending, cut{epoch: e, extents: d.Extents})
	return d, nil
}

// Fill reads the contents of a deferred cut as they were at the cut. A
// delta already filled is left as it is.
func (x *Export) Fill(d *Delta) error {
	x.mu.Lock()
	defer x.mu.Unlock()
	if d != x.open {
		if d.Data == nil && d.Bytes() > 0 {
			return fmt.Errorf("disk cut of epoch %d: superseded before it was read", d.Epoch)
		}
		return nil
	}
	return x.fillLocked(d)
}

func (x *Export) fillLocked(d *Delta) error {
	x.open = nil
	defer func() {
		x.frozen.clear()
		x.saved = nil
	}()
	d.Data = make([]byte, d.Bytes())
	pos := int64(0)
	for _, xt := range d.Extents {
		if _, err := x.f.ReadAt(d.Data[pos:pos+xt.Len], xt.Off); err != nil {
			// Keep the blocks for the next cut: nothing is lost.
			for _, y := range d.Extents {
				x.dirty.mark(y.Off, y.Len)
			}
			d.Data = nil
			return fmt.Errorf("read disk extent %d+%d of epoch %d: %w", xt.Off, xt.Len, d.Epoch, err)
		}
		for b := xt.Off / BlockSize; b < (xt.Off+xt.Len)/BlockSize; b++ {
			if old, ok := x.saved[b]; ok {
				copy(d.Data[pos+b*BlockSize-xt.Off:], old)
			}
		}
		pos += xt.Len
	}
	return nil
}

// saveFrozen keeps the cut-time contents of the frozen blocks that a write
// of n bytes at off is about to change. Called with mu held.
func (x *Export) saveFrozen(off, n int64) error {
	for b := off / BlockSize; b <= (off+n-1)/BlockSize; b++ {
		if !x.frozen.has(b) {
			continue
		}
		old := make([]byte, BlockSize)
		if _, err := x.f.ReadAt(old, b*BlockSize); err != nil {
			return fmt.Errorf("keep block %d of the epoch cut: %w", b, err)
		}
		if x.saved == nil {
			x.saved = make(map[int64][]byte)
		}
		x.saved[b] = old
		x.frozen.unmark(b)
	}
	return nil
}

// dropOpen forgets a deferred cut not read yet (its blocks are resent or
// copied anew). Called with mu held.
func (x *Export) dropOpen() {
	if x.open != nil {
		x.open.Data = nil
	}
	x.open = nil
	x.frozen.clear()
	x.saved = nil
}

// Acked forgets the cuts of epochs up to e: the backup holds them.
func (x *Export) Acked(e uint64) {
	x.mu.Lock()
	defer x.mu.Unlock()
	i := 0
	for i < len(x.pending) && x.pending[i].epoch <= e {
		i++
	}
	x.pending = x.pending[i:]
	x.acked = max(x.acked, e)
}

// BeginCopy starts an initial copy of the whole image to a new backup:
// it forgets every tracked write and cut, so the next cut carries exactly
// the blocks written from now on, including those written while the copy
// (ReadAt while the guest runs) was read.
func (x *Export) BeginCopy() {
	x.mu.Lock()
	defer x.mu.Unlock()
	x.dirty.take(nil)
	x.pending = nil
	x.dropOpen()
}

// ReadAt reads the image (the initial copy reads it while the guest runs).
func (x *Export) ReadAt(p []byte, off int64) (int, error) { return x.f.ReadAt(p, off) }

// Resend prepares the next cut for a new session with a backup that holds
// epoch committed. If that is the last acknowledged epoch or a cut not
// acknowledged yet (its ACK was lost), the backup applied every cut up to
// it, and the next cut carries again the blocks of the later cuts.
// Otherwise the backup's disk is unknown: the next cut carries the whole
// image, and Resend reports full.
func (x *Export) Resend(committed uint64) (full bool) {
	x.mu.Lock()
	defer x.mu.Unlock()
	x.dropOpen()
	known := committed != 0 && committed == x.acked
	for _, c := range x.pending {
		known = known || c.epoch == committed
	}
	if !known {
		x.dirty.markAll()
		x.pending = nil
		return true
	}
	for _, c := range x.pending {
		if c.epoch > committed {
			for _, xt := range c.extents {
				x.dirty.mark(xt.Off, xt.Len)
			}
		}
	}
	x.pending = nil
	x.acked = committed
	return false
}

// SetMaxEpochBytes makes the export ask for an early cut (Pressure) once
// the blocks written since the last cut reach n bytes, bounding what one
// epoch's cut holds in memory and stages on the backup; 0 means no bound.
func (x *Export) SetMaxEpochBytes(n int64) {
	x.mu.Lock()
	defer x.mu.Unlock()
	x.maxEpochBytes = n
}

// Pressure fires when the blocks written since the last cut reached the
// SetMaxEpochBytes bound: the epoch loop should cut now.
func (x *Export) Pressure() <-chan struct{} { return x.pressure }

// Close stops serving (open connections are closed: the guest's next
// request fails with an I/O error) and closes the image.
func (x *Export) Close() error {
	x.mu.Lock()
	x.closed = true
	for c := range x.conns {
		c.Close()
	}
	x.mu.Unlock()
	err := x.l.Close()
	x.wg.Wait()
	if cerr := x.f.Close(); err == nil {
		err = cerr
	}
	return err
}

// backend methods: the NBD connections' view of the image.

func (x *Export) imageSize() int64 { return x.size }

func (x *Export) readAt(p []byte, off int64) error {
	_, err := x.f.ReadAt(p, off)
	return err
}

func (x *Export) writeAt(p []byte, off int64, fua bool) error {
	x.mu.Lock()
	if x.open != nil && len(p) > 0 {
		if err := x.saveFrozen(off, int64(len(p))); err != nil {
			x.mu.Unlock()
			return err // the guest sees an I/O error; nothing changed
		}
	}
	_, err := x.f.WriteAt(p, off)
	x.dirty.mark(off, int64(len(p))) // even a failed write may have changed blocks
	if x.maxEpochBytes > 0 && x.dirty.marked*BlockSize >= x.maxEpochBytes {
		select {
		case x.pressure <- struct{}{}:
		default: // already asked
		}
	}
	x.mu.Unlock()
	x.stats.writes.Add(1)
	x.stats.writeBytes.Add(uint64(len(p)))
	if err != nil {
		return err
	}
	if fua {
		return fdatasync(x.f)
	}
	return nil
}

func (x *Export) flush() error {
	x.stats.flushes.Add(1)
	return fdatasync(x.f)
}

func (x *Export) begin() { x.inflight.Add(1) }
func (x *Export) end()   { x.inflight.Add(-1) }
