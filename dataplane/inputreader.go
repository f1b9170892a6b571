// SPDX-License-Identifier: Apache-2.0

package dataplane

import (
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/cilium/ebpf/ringbuf"
)

// InputSink takes the input log in ring order. OfferInput returns false
// when it has no room; the reader then marks the epoch's log broken.
// frame is the reader's own copy.
type InputSink interface {
	OfferInput(epoch uint64, broken bool, frame []byte) bool
}

// ColouredInputSink is an InputSink that also takes the colour of
// internal frames (FrameInternal, from a VDEchp group peer): after a
// rollback to round R the backup replays an internal frame only if
// wire.ColourDiff(colour, R) <= 0, and every external one as before. The
// reader offers internal frames through OfferColouredInput, the rest and
// broken markers through OfferInput.
type ColouredInputSink interface {
	InputSink
	OfferColouredInput(epoch uint64, colour uint32, frame []byte) bool
}

// FlushSink is a sink told when the reader has handed it every record the
// ring held when InputReader.Flush was called.
type FlushSink interface {
	InputSink
	Flushed()
}

// InputReader reads a port's input-log ring (frames sent to the guest,
// stamped with their epoch) into a sink, for replay after a failover.
// Frames the sink cannot take, and frames the ring itself lost (its
// ring-full counter rose, or a record says so), become broken markers:
// an epoch whose log is incomplete is never replayed.
type InputReader struct {
	rd   *ringbuf.Reader
	port *Port
	sink InputSink
	log  *slog.Logger
	wg   sync.WaitGroup
}

// StartInputReader starts reading the input log of port into sink.
func StartInputReader(port *Port, sink InputSink, log *slog.Logger) (*InputReader, error) {
	ring := port.InputLogRing()
	if ring == nil {
		return nil, fmt.Errorf("vm %s has no input log (attach with 'resilire dataplane attach --input-log'): %w", port.Name(), ErrNoInputLog)
	}
	rd, err := ringbuf.NewReader(ring)
	if err != nil {
		return nil, fmt.Errorf("input log reader: %w", err)
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	r := &InputReader{rd: rd, port: port, sink: sink, log: log}
	r.wg.Add(1)
	go r.run()
	return r, nil
}

// ringFullCheck spaces reads of the ring-full counter.
const ringFullCheck = 20 * time.Millisecond

func (r *InputReader) run() {
	defer r.wg.Done()
	var (
		pending       uint64 // epoch of the first frame lost since the last marker; 0: none
		lastEpoch     uint64 // epoch of the newest record read
		checkedEpoch  uint64 // newest epoch read before the last counter check
		full, checked = r.fullCount(), time.Now()
		rec           ringbuf.Record
	)
	// checkFull marks the frames the ring itself dropped since the last
	// check (its ring-full counter rose): from the newest epoch read then.
	checkFull := func() {
		if f := r.fullCount(); f > full {
			full = f
			pending = minEpoch(pending, max(checkedEpoch, 1))
		}
		checked, checkedEpoch = time.Now(), lastEpoch
	}
	for {
		err := r.rd.ReadInto(&rec)
		if errors.Is(err, ringbuf.ErrFlushed) {
			// Every record written before Flush was read. Frames the ring
			// dropped meanwhile must be marked before the sink hears it.
			checkFull()
			if pending != 0 && r.sink.OfferInput(pending, true, nil) {
				pending = 0
			}
			if fs, ok := r.sink.(FlushSink); ok {
				fs.Flushed()
			}
			continue
		}
		if err != nil {
			if !errors.Is(err, ringbuf.ErrClosed) {
				r.log.Warn("input log reader stopped", "vm", r.port.Name(), "err", err)
			}
			return
		}
		rr, err := ParseRecord(rec.RawSample)
		if err != nil {
			continue
		}
		if time.Since(checked) > ringFullCheck {
			checkFull()
		}
		lastEpoch = rr.Hdr.Epoch
		if rr.Hdr.Flags&FrameLogBroken != 0 {
			pending = minEpoch(pending, rr.Hdr.Epoch)
		}
		if pending != 0 && !r.sink.OfferInput(pending, true, nil) {
			continue // still no room: this frame is lost too, and already covered
		}
		pending = 0
		frame := append([]byte(nil), rr.Frame...)
		CompleteChecksum(&rr.Hdr, frame)
		if !r.offer(&rr.Hdr, frame) {
			pending = rr.Hdr.Epoch
		}
	}
}

// offer hands one frame to the sink, with its colour if it is internal
// and the sink takes colours.
func (r *InputReader) offer(h *FrameHdr, frame []byte) bool {
	if cs, ok := r.sink.(ColouredInputSink); ok && h.Flags&FrameInternal != 0 {
		return cs.OfferColouredInput(h.Epoch, h.Colour, frame)
	}
	return r.sink.OfferInput(h.Epoch, false, frame)
}

func minEpoch(cur, e uint64) uint64 {
	if cur == 0 || e < cur {
		return e
	}
	return cur
}

func (r *InputReader) fullCount() uint64 {
	c, err := r.port.Counters()
	if err != nil {
		return 0
	}
	return c.InputLogFull
}

// Flush makes the reader hand every record the ring holds now to its sink,
// then tell a FlushSink (Flushed). The epoch loop calls it once the guest's
// epoch was advanced: the records of the closed epoch then precede its
// checkpoint on the replication link.
func (r *InputReader) Flush() error { return r.rd.Flush() }

// Close stops the reader.
func (r *InputReader) Close() error {
	err := r.rd.Close()
	r.wg.Wait()
	return err
}
