// SPDX-License-Identifier: Apache-2.0

package dataplane

import (
	"errors"
	"fmt"
	"log/slog"
	"sync"

	"github.com/cilium/ebpf/ringbuf"

	"github.com/resilire/resilire/checkpointer/wire"
	"github.com/resilire/resilire/dataplane/packet"
)

// DefaultHoldBytes bounds the frames a HoldQueue keeps in memory. Held
// frames wait for at most one checkpoint of the receiver, so this is a
// burst of peer traffic, not a window of output.
const DefaultHoldBytes = 16 << 20

// HoldStats are a HoldQueue's counts.
type HoldStats struct {
	Frames     int    // frames held now
	Bytes      int    // their bytes
	Released   uint64 // frames transmitted to the guest
	Dropped    uint64 // frames over the byte bound: dropped, never delivered early
	SendErrors uint64 // frames the port refused (a GSO super-packet over the MTU): dropped
	BadRecords uint64 // malformed ring records (a bug): dropped
}

// HoldQueue keeps the internal frames a group member's guest-egress
// program held (their colour is a round the guest has not reached yet)
// and transmits them to the guest once it has: Release(r) after the
// guest's checkpoint r-1, when its round became r. Per checkpoint the
// caller does
//
//	pause guest → checkpoint → port.SetEpoch(e+1), port.SetRound(r+1) → resume → q.Release(r+1)
//
// Released frames go out on the guest port through a packet socket,
// marked with their colour (release_mark in bpf/inputlog.c), so the
// egress program sees them once more, delivers them (their colour is no
// longer ahead) and logs them with their colour. A frame the program held
// while Release ran, or after it, with a colour already released, is sent
// as soon as it is read. Frames keep ring order.
type HoldQueue struct {
	rd   *ringbuf.Reader
	port *Port
	sock *packet.Socket
	base uint32 // release mark: magic with the colour bits clear
	log  *slog.Logger

	mu       sync.Mutex
	frames   []heldFrame
	maxBytes int
	released uint32 // newest round released
	anyRel   bool   // released is valid
	mark     uint32 // mark set on sock
	st       HoldStats
	wg       sync.WaitGroup
}

type heldFrame struct {
	colour uint32
	frame  []byte
}

// StartHoldQueue starts draining port's hold ring, keeping at most
// maxBytes of frames (0: DefaultHoldBytes). Call it in the port's netns:
// the packet socket stays there.
func StartHoldQueue(port *Port, maxBytes int, log *slog.Logger) (_ *HoldQueue, err error) {
	ring := port.HoldRing()
	if ring == nil {
		return nil, fmt.Errorf("vm %s has no hold ring: %w", port.Name(), ErrNoGroup)
	}
	c, err := port.config()
	if err != nil {
		return nil, err
	}
	if maxBytes <= 0 {
		maxBytes = DefaultHoldBytes
	}
	q := &HoldQueue{port: port, base: c.Magic &^ colourMask, maxBytes: maxBytes, log: orDiscard(log)}
	if q.base == 0 {
		return nil, fmt.Errorf("vm %s: attach magic %#x has no release mark bits: %w", port.Name(), c.Magic, ErrIncompatible)
	}
	if q.sock, err = packet.Open(port.PortName(), false); err != nil {
		return nil, fmt.Errorf("hold queue of %s: %w", port.Name(), err)
	}
	if q.rd, err = ringbuf.NewReader(ring); err != nil {
		q.sock.Close()
		return nil, fmt.Errorf("hold ring reader of %s: %w", port.Name(), err)
	}
	q.wg.Add(1)
	go q.run()
	return q, nil
}

func (q *HoldQueue) run() {
	defer q.wg.Done()
	var rec ringbuf.Record
	for {
		if err := q.rd.ReadInto(&rec); err != nil {
			if !errors.Is(err, ringbuf.ErrClosed) {
				q.log.Warn("hold ring reader stopped", "vm", q.port.Name(), "err", err)
			}
			return
		}
		r, err := ParseRecord(rec.RawSample)
		q.mu.Lock()
		switch {
		case err != nil || r.Hdr.Flags&FrameInternal == 0:
			q.st.BadRecords++
		case q.anyRel && wire.ColourDiff(r.Hdr.Colour, q.released) <= 0 && q.reached(r.Hdr.Colour):
			q.send(q.complete(&r))
		case q.st.Bytes+len(r.Frame) > q.maxBytes:
			q.st.Dropped++
		default:
			q.frames = append(q.frames, q.complete(&r))
			q.st.Frames++
			q.st.Bytes += len(r.Frame)
		}
		q.mu.Unlock()
	}
}

// reached reports whether the port's round is not behind colour now. A
// frame held after its colour was released raced with SetRound; sending
// it while the round is behind (a round set back, which only tests do)
// would have it held again, in a loop.
func (q *HoldQueue) reached(colour uint32) bool {
	cur, err := q.port.Round()
	return err == nil && wire.ColourDiff(colour, cur) <= 0
}

// complete copies the record's frame with its checksum completed: the
// packet socket carries no offload metadata.
func (q *HoldQueue) complete(r *Record) heldFrame {
	f := append([]byte(nil), r.Frame...)
	CompleteChecksum(&r.Hdr, f)
	return heldFrame{colour: r.Hdr.Colour, frame: f}
}

// Release transmits, in order, every held frame whose colour is not ahead
// of round (12-bit serial order), and from now on every such frame as soon
// as it is read. round must not be ahead of the port's own round: the
// program would hold the frames again. It returns how many it sent.
func (q *HoldQueue) Release(round uint32) (int, error) {
	cur, err := q.port.Round()
	if err != nil {
		return 0, err
	}
	if wire.ColourDiff(round, cur) > 0 {
		return 0, fmt.Errorf("vm %s: release round %d ahead of the port's round %d", q.port.Name(), round, cur)
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	q.released, q.anyRel = round&colourMask, true
	return q.sendLocked(func(f heldFrame) bool { return wire.ColourDiff(f.colour, q.released) <= 0 }), nil
}

// ReleaseAll transmits every held frame, in order, whatever its colour:
// the port's round must be 0 (its member left the group's protection),
// where the program holds nothing and delivers every frame it is given.
func (q *HoldQueue) ReleaseAll() (int, error) {
	cur, err := q.port.Round()
	if err != nil {
		return 0, err
	}
	if cur != 0 {
		return 0, fmt.Errorf("vm %s: release every held frame at round %d: the program would hold them again", q.port.Name(), cur)
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.sendLocked(func(heldFrame) bool { return true }), nil
}

// sendLocked transmits, in order, the held frames that release selects
// and keeps the others; it returns how many it sent. q.mu is held.
func (q *HoldQueue) sendLocked(release func(heldFrame) bool) int {
	keep := q.frames[:0]
	sent := 0
	for _, f := range q.frames {
		if !release(f) {
			keep = append(keep, f)
			continue
		}
		q.st.Frames--
		q.st.Bytes -= len(f.frame)
		if q.send(f) {
			sent++
		}
	}
	clear(q.frames[len(keep):])
	q.frames = keep
	return sent
}

// send transmits f marked with its colour; q.mu is held.
func (q *HoldQueue) send(f heldFrame) bool {
	mark := q.base | f.colour&colourMask
	if mark != q.mark {
		if err := q.sock.SetMark(mark); err != nil {
			q.st.SendErrors++
			q.log.Warn("held frame not released", "vm", q.port.Name(), "err", err)
			return false
		}
		q.mark = mark
	}
	if err := q.sock.Send(f.frame); err != nil {
		q.st.SendErrors++
		return false
	}
	q.st.Released++
	return true
}

// Stats returns the queue's counts.
func (q *HoldQueue) Stats() HoldStats {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.st
}

// Close stops the reader. Frames still held are dropped (the senders'
// transports retransmit them); frames still in the ring stay there for
// the next HoldQueue.
func (q *HoldQueue) Close() error {
	err := q.rd.Close()
	q.wg.Wait()
	return errors.Join(err, q.sock.Close())
}
