// SPDX-License-Identifier: Apache-2.0

package netbuf

import (
	"errors"
	"fmt"
	"os"
	"sync"
	"syscall"

	"github.com/cilium/ebpf/ringbuf"
	"github.com/resilire/resilire/dataplane"
	"golang.org/x/sys/unix"
)

// monotonicNow is CLOCK_MONOTONIC in ns, the clock of bpf_ktime_get_ns.
func monotonicNow() int64 {
	var ts unix.Timespec
	_ = unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts)
	return ts.Nano()
}

// holdRecord holds one path A ring record in place. raw lies at the
// landing point when c is not nil (else in memory of its own): the record
// was copied once, from the ring, and is never copied again. The header's
// last VnetHdrLen bytes are overwritten with the virtio-net header, so
// the stored frame is raw[dataplane.RecordHeaderLen-VnetHdrLen:]. It
// reports the bytes of the landing chunk it kept.
func (b *Buffer) holdRecord(raw []byte, c *chunk) int {
	rec, err := dataplane.ParseRecord(raw)
	var v VnetHdr
	if err == nil {
		v, err = BuildVnetHdr(&rec.Hdr, rec.Frame)
	}
	if err != nil {
		b.mu.Lock()
		b.st.Malformed++
		b.mu.Unlock()
		return 0
	}
	data := raw[dataplane.RecordHeaderLen-VnetHdrLen : len(raw) : len(raw)]
	v.Put(data) // rec.Hdr is a decoded copy: the raw header is not needed any more
	if !b.keep(rec.Hdr.Epoch, int64(rec.Hdr.TstampNs), data, c) {
		return 0
	}
	return len(raw)
}

// hold copies one frame (path B) to the landing point and holds it.
func (b *Buffer) hold(epoch uint64, tstamp int64, vnet, frame []byte) {
	n := VnetHdrLen + len(frame)
	dst, c := b.land.reserve(b, n, n)
	copy(dst, vnet)
	copy(dst[VnetHdrLen:], frame)
	if b.keep(epoch, tstamp, dst, c) {
		b.land.advance(n)
	}
}

// keep stores one frame of epoch whose data lies in c (nil: its own
// memory), or writes it at once when its epoch was already released (the
// straggler rule: the backup has acknowledged it). It reports whether the
// arena kept data; if not, its memory may be reused at once.
func (b *Buffer) keep(epoch uint64, tstamp int64, data []byte, c *chunk) bool {
	hash := flowHash(data[VnetHdrLen:])
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return false
	}
	if b.hasCommitted && epoch <= b.committed {
		b.mu.Unlock()
		b.straggler(frameRef{data: data, tstamp: tstamp, hash: hash}) // written before it returns
		return false
	}
	defer b.mu.Unlock()
	n := len(data)
	if b.st.HeldBytes+int64(n)+refOverhead > b.maxBytes {
		b.st.Dropped++
		b.st.DropBytes += uint64(n - VnetHdrLen)
		return false
	}
	b.ar.add(b.ar.get(epoch), frameRef{data: data, tstamp: tstamp, hash: hash}, c)
	b.st.Held++
	if data[1] != vnetGSONone {
		b.st.HeldGSO++
	}
	b.st.HeldFrames++
	b.st.HeldBytes += int64(n) + refOverhead
	return true
}

// straggler writes one frame whose epoch is already committed. Taking wmu
// orders it after the Release that committed its epoch (that Release set
// committed while holding wmu).
func (b *Buffer) straggler(f frameRef) {
	b.wmu.Lock()
	defer b.wmu.Unlock()
	b.mu.Lock()
	closed := b.closed
	b.mu.Unlock()
	if closed {
		return
	}
	res := b.wr.writeOne(f)
	b.mu.Lock()
	b.st.Stragglers++
	b.st.Released += res.frames
	b.st.ReleaseBytes += res.bytes
	b.st.WriteErrors += res.errors
	b.mu.Unlock()
}

// ringSource reads path A's capture ring. Records carry their exact epoch
// stamp, so Advance has nothing to drain.
type ringSource struct{ rd *ringbuf.Reader }

func (s *ringSource) run(b *Buffer) error {
	var rec ringbuf.Record
	read := func(dst []byte) ([]byte, error) {
		rec.RawSample = dst
		err := s.rd.ReadInto(&rec)
		return rec.RawSample, err
	}
	for {
		if err := b.landRecord(read); err != nil {
			if errors.Is(err, ringbuf.ErrClosed) || errors.Is(err, os.ErrClosed) {
				return nil
			}
			return fmt.Errorf("read capture ring: %w", err)
		}
	}
}

// landRecord reads one ring record with read, which copies it into dst
// when dst has the capacity (ringbuf.Reader.ReadInto's contract) and
// returns it, then holds it where it landed.
func (b *Buffer) landRecord(read func(dst []byte) ([]byte, error)) error {
	tail, c := b.land.reserve(b, 0, dataplane.RecordHeaderLen+dataplane.MaxFrameLen)
	raw, err := read(tail)
	if err != nil {
		return err
	}
	if len(raw) > cap(tail) {
		c = nil // read allocated it: memory of its own
	}
	if n := b.holdRecord(raw, c); c != nil {
		b.land.advance(n)
	}
	return nil
}

func (s *ringSource) drainClosing(*Buffer, uint64) error { return nil }
func (s *ringSource) close() error                       { return s.rd.Close() }

// tapSource reads path B: the capture program redirected the guest's frames
// to the tap's egress, and the kernel queues them, with a virtio-net header
// (TUNSETOFFLOAD), on the tap fd. A frame is stamped with the open epoch
// when it is read. Advance drains the fd into the closing epoch while the
// guest is paused, so every frame the tap queued before the pause belongs to
// the closing epoch. A frame still in flight inside the kernel is stamped
// with the next epoch: it leaves one epoch later, never early. No frame the
// guest sends after the pause can be read before the drain ends.
type tapSource struct {
	q   *tapQueue
	rc  syscall.RawConn
	rmu sync.Mutex // held while reading and stamping; Advance takes it to drain
	buf []byte
}

func newTapSource(q *tapQueue) (*tapSource, error) {
	rc, err := q.f.SyscallConn()
	if err != nil {
		return nil, fmt.Errorf("tap raw conn: %w", err)
	}
	return &tapSource{q: q, rc: rc, buf: make([]byte, VnetHdrLen+dataplane.MaxFrameLen+4096)}, nil
}

func (s *tapSource) run(b *Buffer) error {
	var rerr error
	for {
		err := s.rc.Read(func(fd uintptr) bool {
			s.rmu.Lock()
			defer s.rmu.Unlock()
			for i := 0; i < 64; i++ {
				again, err := s.readOne(b, int(fd), -1)
				if again {
					return false // wait until readable
				}
				if err != nil {
					rerr = err
					return true
				}
			}
			return true
		})
		if err != nil {
			if errors.Is(err, os.ErrClosed) {
				return nil
			}
			return fmt.Errorf("read tap: %w", err)
		}
		if rerr != nil {
			return rerr
		}
	}
}

// readOne reads one frame and holds it in epoch (the open epoch when
// epoch < 0). again reports an empty queue.
func (s *tapSource) readOne(b *Buffer, fd int, epoch int64) (again bool, err error) {
	n, err := unix.Read(fd, s.buf)
	switch {
	case errors.Is(err, unix.EAGAIN):
		return true, nil
	case errors.Is(err, unix.EINTR):
		return false, nil
	case err != nil:
		return false, fmt.Errorf("read tap: %w", err)
	case n < VnetHdrLen+dataplane.MinFrameLen:
		b.mu.Lock()
		b.st.Malformed++
		b.mu.Unlock()
		return false, nil
	}
	ts := monotonicNow()
	e := uint64(epoch)
	if epoch < 0 {
		b.mu.Lock()
		e = b.cur
		b.mu.Unlock()
	}
	b.hold(e, ts, s.buf[:VnetHdrLen], s.buf[VnetHdrLen:n])
	return false, nil
}

// drainClosing reads everything the tap has queued into epoch e. The
// reader cannot stamp concurrently: it holds rmu while it reads and stamps.
func (s *tapSource) drainClosing(b *Buffer, e uint64) error {
	s.rmu.Lock()
	defer s.rmu.Unlock()
	for i := 0; i < 1<<20; i++ {
		again, err := s.readOne(b, s.q.fd, int64(e))
		if again {
			return nil
		}
		if err != nil {
			return fmt.Errorf("drain tap into epoch %d: %w", e, err)
		}
	}
	return nil
}

func (s *tapSource) close() error { return s.q.close() }
