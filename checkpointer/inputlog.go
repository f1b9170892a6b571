// SPDX-License-Identifier: Apache-2.0

package checkpointer

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/resilire/resilire/checkpointer/wire"
)

// Input log replay (Options InputReplay, off by default). The primary
// ships every frame sent to the guest, stamped with the port's epoch, as
// an INPUT frame on the replication link; the backup keeps the frames of
// epochs >= its committed epoch and, on failover, re-injects them toward
// the resumed guest so requests whose replies died with the uncommitted
// epoch are answered at once instead of after the client's retransmission.

// DefaultInputKeepBytes bounds the frames a backup keeps for replay.
const DefaultInputKeepBytes = 16 << 20

// InputInjector re-injects frames toward the resumed guest (the backup's
// guest port) in order.
type InputInjector interface {
	Inject(frames [][]byte) (int, error)
}

// inputKeeper is the backup's store of input frames not yet covered by a
// committed checkpoint. Frames stamped e may still sit unconsumed in the
// guest's queue when checkpoint e is taken, so frames of epochs >= the
// committed epoch are kept (TCP ignores the duplicates).
type inputKeeper struct {
	mu         sync.Mutex
	limit      int
	recs       []wire.InputRecord
	bytes      int
	brokenFrom uint64 // first epoch whose log is incomplete; 0: none
}

func newInputKeeper(limit int) *inputKeeper {
	if limit <= 0 {
		limit = DefaultInputKeepBytes
	}
	return &inputKeeper{limit: limit}
}

func (k *inputKeeper) markBrokenLocked(epoch uint64) {
	if k.brokenFrom == 0 || epoch < k.brokenFrom {
		k.brokenFrom = max(epoch, 1)
	}
}

// add keeps a copy of r, dropping the oldest frames (and marking their
// epoch broken) beyond the byte bound.
func (k *inputKeeper) add(r wire.InputRecord, committed uint64) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if r.Broken {
		k.markBrokenLocked(r.Epoch)
	}
	if len(r.Frame) == 0 || r.Epoch < committed {
		return
	}
	r.Frame = append([]byte(nil), r.Frame...)
	k.recs = append(k.recs, r)
	k.bytes += len(r.Frame)
	drop := 0
	for k.bytes > k.limit && drop < len(k.recs) {
		k.bytes -= len(k.recs[drop].Frame)
		k.markBrokenLocked(k.recs[drop].Epoch)
		drop++
	}
	k.recs = k.recs[drop:]
}

// commit drops the frames of epochs before the committed epoch e; a log
// broken before e no longer matters.
func (k *inputKeeper) commit(e uint64) {
	k.mu.Lock()
	defer k.mu.Unlock()
	i := 0
	for i < len(k.recs) && k.recs[i].Epoch < e {
		k.bytes -= len(k.recs[i].Frame)
		i++
	}
	k.recs = k.recs[i:]
	if k.brokenFrom != 0 && k.brokenFrom < e {
		k.brokenFrom = 0
	}
}

// reset starts a new session: frames sent while no session ran are
// unknown, so the log is broken from the committed epoch until the next
// commit. Frames of epochs from floor up to it stay (a group member's
// backup may still roll back to floor, see Backup.undo).
func (k *inputKeeper) reset(floor, committed uint64) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.brokenFrom = 0
	k.markBrokenLocked(committed)
	keep := k.recs[:0]
	k.bytes = 0
	for _, r := range k.recs {
		if r.Epoch >= floor && r.Epoch < committed {
			keep = append(keep, r)
			k.bytes += len(r.Frame)
		}
	}
	clear(k.recs[len(keep):])
	k.recs = keep
}

// take returns the frames to replay over committed epoch e, in order: those
// stamped >= e and before the first broken epoch. After a group's rollback
// to round (non-zero), a frame from another member is replayed only if it
// was sent in round or before: it was in transit across the group's cut.
// One sent later is not in its sender's resumed state, which sends it
// again (replaying it would deliver it twice).
func (k *inputKeeper) take(e, round uint64) [][]byte {
	k.mu.Lock()
	defer k.mu.Unlock()
	var out [][]byte
	for _, r := range k.recs {
		if r.Epoch < e {
			continue
		}
		if k.brokenFrom != 0 && r.Epoch >= k.brokenFrom {
			break
		}
		if r.Internal && round != 0 && wire.ColourDiff(uint32(r.Colour), uint32(round)) > 0 {
			continue
		}
		out = append(out, r.Frame)
	}
	return out
}

// shipInput sends the input log on the session until it dies: one record,
// then whatever else is ready (bounded), flushed together. Every record
// taken from the queue counts as handled once its write returned: after a
// failed write the session is dead, and no checkpoint acknowledged on it
// can rely on the record.
func (s *session) shipInput(q *InputQueue) {
	defer s.wg.Done()
	const batch = 64
	var buf []byte
	for {
		var r wire.InputRecord
		select {
		case <-s.dead:
			return
		case r = <-q.ch:
		}
		for n := 0; ; n++ {
			buf = r.Marshal(buf[:0])
			more := false
			if n < batch {
				select {
				case r = <-q.ch:
					more = true
				default:
				}
			}
			err := s.l.Write(wire.Input, buf, !more)
			q.handle(1)
			if err != nil {
				s.fail(fmt.Errorf("%w: input log: %w", ErrBackupLost, err))
				return
			}
			if !more {
				break
			}
		}
	}
}

// InputQueue carries the guest's input log from the data plane's reader
// to the replication session (PrimaryConfig.Input). It never blocks the
// reader: a full queue refuses the record, and the reader marks its epoch
// broken.
//
// With a flusher (SetFlusher), each checkpoint waits until the records
// the data plane wrote before it are on the replication link (sync): a
// backup that acknowledged checkpoint e holds the input log of every
// epoch up to e. A VDEchp group relies on it: the frames in transit
// across round r's cut are logged in round r+1, so they are at the
// backups once every backup holds round r+1.
type InputQueue struct {
	ch chan wire.InputRecord

	// Counted per frame without the lock (the reader's and the session's
	// hot path); the lock and cond serve the rare waiter.
	offered atomic.Uint64 // records queued
	handled atomic.Uint64 // records the session wrote (or failed to)
	waiting atomic.Bool   // sync is waiting: handle must wake it

	mu        sync.Mutex
	cond      *sync.Cond
	flusher   InputFlusher
	flushes   uint64 // flushes the reader completed
	flushedAt uint64 // offered when the last flush completed
}

// InputFlusher makes the input-log reader hand over every record the data
// plane had written when Flush was called, then call the queue's Flushed
// (dataplane.InputReader).
type InputFlusher interface {
	Flush() error
}

// NewInputQueue holds up to n records waiting for the replication link.
func NewInputQueue(n int) *InputQueue {
	q := &InputQueue{ch: make(chan wire.InputRecord, n)}
	q.cond = sync.NewCond(&q.mu)
	return q
}

// SetFlusher makes every checkpoint wait for the records written before
// it (see InputQueue).
func (q *InputQueue) SetFlusher(f InputFlusher) {
	q.mu.Lock()
	q.flusher = f
	q.mu.Unlock()
}

func (q *InputQueue) offer(r wire.InputRecord) bool {
	select {
	case q.ch <- r:
		q.offered.Add(1)
		return true
	default:
		return false
	}
}

// OfferInput queues one record; false when the queue is full.
func (q *InputQueue) OfferInput(epoch uint64, broken bool, frame []byte) bool {
	return q.offer(wire.InputRecord{Epoch: epoch, Broken: broken, Frame: frame})
}

// OfferColouredInput queues a frame from another member of the VDEchp
// group, with the round it was sent in (dataplane.ColouredInputSink).
func (q *InputQueue) OfferColouredInput(epoch uint64, colour uint32, frame []byte) bool {
	return q.offer(wire.InputRecord{Epoch: epoch, Internal: true, Colour: uint16(colour & wire.MaxColour), Frame: frame})
}

// Flushed is the reader's answer to a flush (dataplane.FlushSink): every
// record written before it was offered.
func (q *InputQueue) Flushed() {
	q.mu.Lock()
	q.flushes++
	q.flushedAt = q.offered.Load()
	q.cond.Broadcast()
	q.mu.Unlock()
}

// handle counts n records written; a waiting sync is woken (it set
// waiting, under the lock, before it last looked at handled).
func (q *InputQueue) handle(n uint64) {
	q.handled.Add(n)
	if q.waiting.Load() {
		q.mu.Lock()
		q.cond.Broadcast()
		q.mu.Unlock()
	}
}

// sync returns once every record the data plane wrote before the call was
// written to the replication link (nil at once without a flusher).
func (q *InputQueue) sync(ctx context.Context) error {
	q.mu.Lock()
	f, gen := q.flusher, q.flushes
	q.mu.Unlock()
	if f == nil {
		return nil
	}
	if err := f.Flush(); err != nil {
		return fmt.Errorf("flush the input log: %w", err)
	}
	stop := context.AfterFunc(ctx, func() { q.mu.Lock(); q.cond.Broadcast(); q.mu.Unlock() })
	defer stop()
	q.mu.Lock()
	defer q.mu.Unlock()
	q.waiting.Store(true)
	defer q.waiting.Store(false)
	for q.flushes == gen || q.handled.Load() < q.flushedAt {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("input log not on the link (%d of %d records): %w", q.handled.Load(), q.flushedAt, err)
		}
		q.cond.Wait()
	}
	return nil
}
