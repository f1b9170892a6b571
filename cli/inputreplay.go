// SPDX-License-Identifier: Apache-2.0

package cli

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/cilium/ebpf/ringbuf"
	"golang.org/x/sys/unix"

	"github.com/resilire/resilire/checkpointer"
	"github.com/resilire/resilire/dataplane"
)

// Input log replay (--input-replay, off by default): protect ships the
// port's input log to the backup; standby re-injects it toward the resumed
// guest after a failover.

var errInputReplay = errors.New("--input-replay needs --dataplane (the port attached with --input-log)")

// inputQueue is how many records may wait for the replication link.
const inputQueue = 4096

// inputShipper reads the port's input-log ring into a channel for the
// primary. Frames that cannot be queued, and a rising ring-full counter,
// become broken markers.
type inputShipper struct {
	rd   *ringbuf.Reader
	port *dataplane.Port
	out  chan checkpointer.InputRecord
	wg   sync.WaitGroup
}

// startInputShipper starts reading the input log of port.
func startInputShipper(port *dataplane.Port, log *slog.Logger) (*inputShipper, error) {
	ring := port.InputLogRing()
	if ring == nil {
		return nil, fmt.Errorf("--input-replay: vm %s has no input log (attach with 'resilire dataplane attach --input-log')", port.Name())
	}
	rd, err := ringbuf.NewReader(ring)
	if err != nil {
		return nil, fmt.Errorf("input log reader: %w", err)
	}
	s := &inputShipper{rd: rd, port: port, out: make(chan checkpointer.InputRecord, inputQueue)}
	s.wg.Add(1)
	go s.run(log)
	return s, nil
}

func (s *inputShipper) run(log *slog.Logger) {
	defer s.wg.Done()
	var (
		pending       uint64 // epoch of the first frame lost since the last marker; 0: none
		lastEpoch     uint64 // epoch of the newest record read
		checkedEpoch  uint64 // newest epoch read before the last counter check
		full, checked = s.fullCount(), time.Now()
		rec           ringbuf.Record
	)
	for {
		if err := s.rd.ReadInto(&rec); err != nil {
			if !errors.Is(err, ringbuf.ErrClosed) {
				log.Warn("input log reader stopped", "err", err)
			}
			return
		}
		r, err := dataplane.ParseRecord(rec.RawSample)
		if err != nil {
			continue
		}
		if time.Since(checked) > 20*time.Millisecond {
			if f := s.fullCount(); f > full {
				full = f
				pending = minEpoch(pending, max(checkedEpoch, 1))
			}
			checked, checkedEpoch = time.Now(), lastEpoch
		}
		lastEpoch = r.Hdr.Epoch
		if r.Hdr.Flags&dataplane.FrameLogBroken != 0 {
			pending = minEpoch(pending, r.Hdr.Epoch)
		}
		if pending != 0 && !s.send(checkpointer.InputRecord{Epoch: pending, Broken: true}) {
			continue // still no room: this frame is lost too, and already covered
		}
		pending = 0
		frame := append([]byte(nil), r.Frame...)
		dataplane.CompleteChecksum(&r.Hdr, frame)
		if !s.send(checkpointer.InputRecord{Epoch: r.Hdr.Epoch, Frame: frame}) {
			pending = r.Hdr.Epoch
		}
	}
}

func minEpoch(cur, e uint64) uint64 {
	if cur == 0 || e < cur {
		return e
	}
	return cur
}

func (s *inputShipper) send(r checkpointer.InputRecord) bool {
	select {
	case s.out <- r:
		return true
	default:
		return false
	}
}

func (s *inputShipper) fullCount() uint64 {
	c, err := s.port.Counters()
	if err != nil {
		return 0
	}
	return c.InputLogFull
}

// close stops the reader.
func (s *inputShipper) close() {
	s.rd.Close()
	s.wg.Wait()
}

// tapInjector sends frames on the guest's port with an AF_PACKET socket:
// what is transmitted on a tap goes to its reader (QEMU), i.e. to the guest.
type tapInjector struct {
	iface string
	log   *slog.Logger
}

// Inject sends frames in order; a frame the device refuses (a GSO
// super-packet over the MTU) is skipped and counted.
func (t tapInjector) Inject(frames [][]byte) (int, error) {
	ifi, err := net.InterfaceByName(t.iface)
	if err != nil {
		return 0, fmt.Errorf("replay on %s: %w", t.iface, err)
	}
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return 0, fmt.Errorf("replay socket: %w", err)
	}
	defer unix.Close(fd)
	if err := unix.Bind(fd, &unix.SockaddrLinklayer{Ifindex: ifi.Index}); err != nil {
		return 0, fmt.Errorf("replay bind %s: %w", t.iface, err)
	}
	sent, skipped := 0, 0
	for _, f := range frames {
		if _, err := unix.Write(fd, f); err != nil {
			skipped++
			continue
		}
		sent++
	}
	if skipped > 0 {
		t.log.Warn("input replay skipped frames the port refused", "iface", t.iface, "frames", skipped)
	}
	return sent, nil
}
