// SPDX-License-Identifier: Apache-2.0

package netbuf

import (
	"errors"
	"fmt"
	"os"
	"sync"
	"syscall"

	"github.com/cilium/ebpf/ringbuf"
	"golang.org/x/sys/unix"
)

// monotonicNow is CLOCK_MONOTONIC in ns, the clock of bpf_ktime_get_ns.
func monotonicNow() int64 {
	var ts unix.Timespec
	_ = unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts)
	return ts.Nano()
}

// holdRecord takes one path A ring record.
func (b *Buffer) holdRecord(raw []byte) {
	rec, err := ParseRecord(raw)
	var v VnetHdr
	if err == nil {
		v, err = BuildVnetHdr(&rec.Header, rec.Frame)
	}
	if err != nil {
		b.mu.Lock()
		b.st.Malformed++
		b.mu.Unlock()
		return
	}
	var vnet [VnetHdrLen]byte
	v.Put(vnet[:])
	b.hold(rec.Epoch, int64(rec.TstampNS), vnet[:], rec.Frame)
}

// hold stores one frame of epoch, or writes it at once when its epoch was
// already released (the straggler rule: the backup has acknowledged it).
func (b *Buffer) hold(epoch uint64, tstamp int64, vnet, frame []byte) {
	hash := flowHash(frame)
	n := VnetHdrLen + len(frame)
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return
	}
	if b.hasCommitted && epoch <= b.committed {
		b.mu.Unlock()
		data := append(append(make([]byte, 0, n), vnet...), frame...)
		b.straggler(frameRef{data: data, tstamp: tstamp, hash: hash})
		return
	}
	defer b.mu.Unlock()
	if b.st.HeldBytes+int64(n)+refOverhead > b.maxBytes {
		b.st.Dropped++
		b.st.DropBytes += uint64(len(frame))
		return
	}
	a := b.ar.get(epoch)
	dst := b.ar.reserve(a, n)
	copy(dst, vnet)
	copy(dst[VnetHdrLen:], frame)
	b.ar.commit(a, n, tstamp, hash)
	b.st.Held++
	if vnet[1] != vnetGSONone {
		b.st.HeldGSO++
	}
	b.st.HeldFrames++
	b.st.HeldBytes += int64(n) + refOverhead
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
	for {
		if err := s.rd.ReadInto(&rec); err != nil {
			if errors.Is(err, ringbuf.ErrClosed) || errors.Is(err, os.ErrClosed) {
				return nil
			}
			return fmt.Errorf("read capture ring: %w", err)
		}
		b.holdRecord(rec.RawSample)
	}
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
	return &tapSource{q: q, rc: rc, buf: make([]byte, VnetHdrLen+MaxFrameLen+4096)}, nil
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
	case n < VnetHdrLen+minFrameLen:
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
