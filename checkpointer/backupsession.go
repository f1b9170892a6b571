// SPDX-License-Identifier: Apache-2.0

package checkpointer

import (
	"context"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/resilire/resilire/checkpointer/codec"
	"github.com/resilire/resilire/checkpointer/wire"
)

// handle runs one primary connection: hello, then checkpoints until the
// connection fails, a checkpoint is refused, or a newer session replaces it.
func (b *Backup) handle(ctx context.Context, conn net.Conn) {
	defer conn.Close()
	l := wire.NewConn(conn, b.cfg.HeartbeatTimeout)
	peer := conn.RemoteAddr().String()
	h, err := b.readHello(l)
	if err != nil {
		b.refuse(l, peer, err)
		return
	}
	s := &backupSession{conn: conn, done: make(chan struct{})}
	defer close(s.done)
	b.mu.Lock()
	if b.state == StateFencing || b.state == StateActive || b.recovering {
		st := b.state
		b.mu.Unlock()
		b.refuse(l, peer, fmt.Errorf("backup is %s: %w", st, wire.ErrSession))
		return
	}
	old := b.cur
	b.cur, b.peer, b.warned = s, peer, false
	b.mu.Unlock()
	if old != nil { // one writer at a time: the newer session wins
		old.conn.Close()
		<-old.done
	}
	if err := b.resizeReplica(h.MemSize); err != nil {
		b.refuse(l, peer, err)
		return
	}
	dec, err := b.cfg.Codec.NewDecoder(uint64(len(b.cfg.Replica.Memory())))
	if err != nil {
		b.refuse(l, peer, err)
		return
	}
	b.mu.Lock()
	committed, floor := b.committed, b.inputFloorLocked()
	b.mu.Unlock()
	b.input.reset(floor, committed)
	b.touch()
	if err := l.Write(wire.HelloAck, wire.HelloAckMsg{Session: h.Session, Committed: committed}.Marshal(), true); err != nil {
		return
	}
	b.log.Info("primary connected", "vm", b.cfg.VM, "peer", peer, "epoch", committed)
	stop := make(chan struct{})
	defer close(stop)
	go func() { _ = l.Heartbeat(stop, b.cfg.HeartbeatInterval) }() // a failed write ends the session through its reads
	var seq uint64
	for ctx.Err() == nil {
		typ, payload, err := l.Read(b.cfg.HeartbeatTimeout)
		if errors.Is(err, wire.ErrFrame) {
			b.refuse(l, peer, err)
			return
		}
		if err != nil {
			b.log.Warn("primary connection ended", "vm", b.cfg.VM, "peer", peer, "err", err)
			return
		}
		b.touch()
		switch typ {
		case wire.Heartbeat:
			continue
		case wire.Input:
			if err := b.onInput(payload); err != nil {
				b.refuse(l, peer, err)
				return
			}
		case wire.Handover:
			if err := b.onHandover(ctx, l, payload); err != nil {
				b.refuse(l, peer, err)
			}
			return // the primary stopped; this session is over either way
		case wire.Scrub:
			if err := b.onScrub(l, payload); err != nil {
				b.refuse(l, peer, err)
				return
			}
		case wire.Begin:
			m, err := wire.ParseCheckpoint(payload)
			if err == nil {
				err = b.receive(l, s, dec, m, seq)
			}
			if err != nil {
				b.refuse(l, peer, err)
				return
			}
			seq = m.Seq
		default:
			b.refuse(l, peer, fmt.Errorf("frame type %d outside a checkpoint: %w", typ, wire.ErrFrame))
			return
		}
	}
}

// readHello reads and checks the session hello.
func (b *Backup) readHello(l *wire.Conn) (wire.HelloMsg, error) {
	typ, payload, err := l.Read(b.cfg.HeartbeatTimeout)
	if err != nil {
		return wire.HelloMsg{}, fmt.Errorf("hello: %w", err)
	}
	if typ != wire.Hello {
		return wire.HelloMsg{}, fmt.Errorf("first frame type %d: %w", typ, wire.ErrSession)
	}
	h, err := wire.ParseHello(payload)
	if err != nil {
		return h, err
	}
	switch {
	case h.VM != b.cfg.VM:
		return h, fmt.Errorf("hello for vm %q, this backup protects %q: %w", h.VM, b.cfg.VM, wire.ErrSession)
	case h.MemSize != uint64(len(b.cfg.Replica.Memory())) && !b.resizable():
		return h, fmt.Errorf("hello memory %d bytes, replica %d: %w", h.MemSize, len(b.cfg.Replica.Memory()), wire.ErrSession)
	case h.DiskSize != b.diskSize():
		return h, fmt.Errorf("hello disk %d bytes, backup %d: %w", h.DiskSize, b.diskSize(), wire.ErrSession)
	case h.Codec != b.cfg.Codec.Name():
		return h, fmt.Errorf("hello codec %q, backup %q: %w", h.Codec, b.cfg.Codec.Name(), wire.ErrSession)
	}
	return h, nil
}

// resizable reports whether the replica may still take the primary's
// size: a Resizer that holds no committed checkpoint. Later a size change
// would throw away the committed state, and the hello is refused instead.
func (b *Backup) resizable() bool {
	_, ok := b.cfg.Replica.(Resizer)
	committed, _ := b.Committed()
	return ok && committed == 0
}

// resizeReplica sizes a Resizer replica to the primary's memory. It runs
// once no other session can touch the replica.
func (b *Backup) resizeReplica(size uint64) error {
	if size == uint64(len(b.cfg.Replica.Memory())) {
		return nil
	}
	if !b.resizable() {
		return fmt.Errorf("hello memory %d bytes, replica %d: %w", size, len(b.cfg.Replica.Memory()), wire.ErrSession)
	}
	r := b.cfg.Replica.(Resizer)
	if err := r.Resize(size); err != nil {
		return fmt.Errorf("size the replica to the primary's %d bytes: %w", size, err)
	}
	b.log.Info("replica sized from the primary", "vm", b.cfg.VM, "bytes", size)
	return nil
}

// receive stages one checkpoint whole, verifies it, applies it atomically
// and ACKs it. Until Apply nothing touches the replica; disk records wait
// in the journal.
func (b *Backup) receive(l *wire.Conn, s *backupSession, dec codec.Decoder, m wire.CheckpointMsg, lastSeq uint64) (err error) {
	start := time.Now()
	if d := b.cfg.Disk; d != nil {
		if err := d.Abort(); err != nil { // a checkpoint cut short earlier
			return fmt.Errorf("drop staged disk records: %w", err)
		}
		defer func() {
			if err != nil && d.Staged() {
				_ = d.Abort() // refused: the error says why; the next receive retries the drop
			}
		}()
	}
	if m.Seq != lastSeq+1 {
		return fmt.Errorf("checkpoint seq %d after %d: %w", m.Seq, lastSeq, ErrReplay)
	}
	if b.cfg.Group {
		// This checkpoint began: the group committed the staged one.
		if err := b.applyPending(s); err != nil {
			return err
		}
	}
	committed, _ := b.Committed()
	if m.Kind == wire.Consistent && m.Epoch <= committed {
		return fmt.Errorf("checkpoint epoch %d, committed %d: %w", m.Epoch, committed, ErrReplay)
	}
	if m.Kind == wire.Precopy && committed > 0 {
		return fmt.Errorf("pre-copy over committed epoch %d: %w", committed, wire.ErrSession)
	}
	mem := b.cfg.Replica.Memory()
	dr := wire.NewDataReader(l, b.cfg.HeartbeatTimeout)
	dr.OnBeat, dr.OnInput = b.touch, b.onInput
	staged, err := dec.Decode(dr, mem)
	if err != nil {
		return fmt.Errorf("checkpoint seq %d epoch %d: %w", m.Seq, m.Epoch, err)
	}
	typ, payload, err := b.readDisk(dr, m)
	if err != nil {
		return fmt.Errorf("checkpoint epoch %d end: %w", m.Epoch, wire.TruncatedOnEOF(err))
	}
	b.touch()
	if typ != wire.End {
		return fmt.Errorf("frame type %d instead of END: %w", typ, wire.ErrTruncated)
	}
	end, err := wire.ParseCheckpoint(payload)
	if err != nil {
		return err
	}
	if end != m || staged.Epoch() != m.Epoch {
		return fmt.Errorf("END %+v / codec epoch %d for BEGIN %+v: %w", end, staged.Epoch(), m, wire.ErrCorrupt)
	}
	keep := b.commit
	if b.cfg.Group {
		keep = b.stage
	}
	if err := keep(s, staged, m); err != nil {
		return err
	}
	b.m.WireBytes.Add(float64(dr.N()))
	b.m.Epoch.Observe(time.Since(start).Seconds())
	b.log.Debug("checkpoint applied", "vm", b.cfg.VM, "epoch", m.Epoch, "bytes", dr.N(), "dur", time.Since(start))
	return l.Write(wire.Ack, m.Marshal(), true)
}

// commit applies a verified checkpoint if this session may still write.
func (b *Backup) commit(s *backupSession, staged codec.Staged, m wire.CheckpointMsg) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := b.writableLocked(s, m); err != nil {
		return err
	}
	return b.applyLocked(staged, m)
}

// writableLocked reports whether session s may still write the replica.
func (b *Backup) writableLocked(s *backupSession, m wire.CheckpointMsg) error {
	if b.cur != s || b.recovering || b.state == StateFencing || b.state == StateActive {
		return fmt.Errorf("session superseded before epoch %d applied: %w", m.Epoch, wire.ErrSession)
	}
	return nil
}

// applyLocked writes a verified checkpoint into the replica.
func (b *Backup) applyLocked(staged codec.Staged, m wire.CheckpointMsg) error {
	if err := b.commitDisk(m); err != nil {
		return err
	}
	b.saveUndoLocked(staged, m)
	staged.Apply(b.cfg.Replica.Memory())
	err := b.cfg.Replica.Sync()
	if err == nil && b.cfg.Disk != nil && b.cfg.Disk.Staged() {
		err = b.cfg.Disk.Apply()
	}
	if err != nil {
		// The replica no longer matches any checkpoint: never resume from it.
		b.committed, b.devState = 0, nil
		b.undo.clear()
		b.setStateLocked(StateWaiting)
		return fmt.Errorf("sync replica after epoch %d: %w", m.Epoch, err)
	}
	if m.Kind == wire.Consistent {
		b.committed = m.Epoch
		b.input.commit(b.inputFloorLocked())
		b.devState = append([]byte(nil), staged.State()...)
		if b.state != StateStandby {
			b.log.Info("first consistent checkpoint committed", "vm", b.cfg.VM, "epoch", m.Epoch)
			b.setStateLocked(StateStandby)
		}
		b.m.Checkpoints.WithLabelValues("applied").Inc()
	} else if b.state != StateSyncing {
		b.setStateLocked(StateSyncing)
	}
	return nil
}

// onInput keeps one input-log record for replay after a failover.
func (b *Backup) onInput(p []byte) error {
	r, err := wire.ParseInput(p)
	if err != nil {
		return err
	}
	if b.cfg.Failover.Inject != nil {
		b.mu.Lock()
		floor := b.inputFloorLocked()
		b.mu.Unlock()
		b.input.add(r, floor)
	}
	return nil
}

// refuse tells the peer why, logs it and counts it. Nothing was applied.
func (b *Backup) refuse(l *wire.Conn, peer string, err error) {
	b.m.Checkpoints.WithLabelValues("refused").Inc()
	b.log.Warn("refused primary", "vm", b.cfg.VM, "peer", peer, "err", err)
	msg := err.Error()
	if len(msg) > wire.MaxControlPayload {
		msg = msg[:wire.MaxControlPayload]
	}
	_ = l.Write(wire.Error, []byte(msg), true)
}
