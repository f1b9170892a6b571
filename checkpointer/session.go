// SPDX-License-Identifier: Apache-2.0

package checkpointer

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/resilire/resilire/checkpointer/codec"
	"github.com/resilire/resilire/checkpointer/disk"
	"github.com/resilire/resilire/checkpointer/wire"
)

// session is the primary's end of one connection to the backup: a reader
// goroutine that collects ACKs and heartbeats, a heartbeat sender, and
// the checkpoint writer. Any failure closes dead; the session is then
// finished and the primary treats the backup as lost.
type session struct {
	l         *wire.Conn
	id        [wire.SessionIDLen]byte
	committed uint64 // backup's committed epoch at hello time
	seq       uint64
	acks      chan wire.CheckpointMsg
	// handoverAck receives the epoch of a HANDOVER_ACK (switchover.go).
	handoverAck chan uint64
	onScrub     func(wire.ScrubReportMsg)
	dead        chan struct{}
	once        sync.Once
	err         error
	wg          sync.WaitGroup
}

// dialSession connects, says hello and starts the session's goroutines.
func (p *Primary) dialSession(ctx context.Context) (*session, error) {
	conn, err := p.cfg.Dial(ctx)
	if err != nil {
		return nil, fmt.Errorf("dial backup: %w", err)
	}
	s := &session{l: wire.NewConn(conn, p.cfg.HeartbeatTimeout), acks: make(chan wire.CheckpointMsg, 16), handoverAck: make(chan uint64, 1),
		dead: make(chan struct{}), onScrub: p.onScrubReport}
	if _, err := rand.Read(s.id[:]); err != nil {
		conn.Close()
		return nil, fmt.Errorf("session id: %w", err)
	}
	h := wire.HelloMsg{MemSize: p.cfg.Domain.MemorySize(), Session: s.id, VM: p.cfg.Domain.Name(), Codec: p.cfg.Codec.Name()}
	if p.cfg.Disk != nil {
		h.DiskSize = uint64(p.cfg.Disk.Size())
	}
	hp, err := h.Marshal()
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("hello: %w", err)
	}
	if err := s.l.Write(wire.Hello, hp, true); err != nil {
		conn.Close()
		return nil, fmt.Errorf("hello: %w", err)
	}
	typ, payload, err := s.l.Read(p.cfg.HeartbeatTimeout)
	if err == nil && typ == wire.Error {
		err = fmt.Errorf("%w: %s", wire.ErrRefused, payload)
	} else if err == nil && typ != wire.HelloAck {
		err = fmt.Errorf("answer to hello is frame type %d: %w", typ, wire.ErrSession)
	}
	var ack wire.HelloAckMsg
	if err == nil {
		ack, err = wire.ParseHelloAck(payload)
	}
	if err == nil && ack.Session != s.id {
		err = fmt.Errorf("hello ack for another session: %w", wire.ErrSession)
	}
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("hello: %w", err)
	}
	s.committed = ack.Committed
	s.wg.Add(2)
	go s.readLoop(p.cfg.HeartbeatTimeout)
	go s.beatLoop(p.cfg.HeartbeatInterval)
	if p.cfg.Input != nil {
		s.wg.Add(1)
		go s.shipInput(p.cfg.Input)
	}
	return s, nil
}

// fail records the first error and ends the session.
func (s *session) fail(err error) {
	s.once.Do(func() {
		s.err = err
		close(s.dead)
		s.l.Close()
	})
}

// close ends the session and waits for its goroutines.
func (s *session) close() error {
	s.fail(errors.New("session closed"))
	s.wg.Wait()
	return nil
}

func (s *session) readLoop(timeout time.Duration) {
	defer s.wg.Done()
	for {
		// Any frame, heartbeats included, proves the backup alive.
		typ, payload, err := s.l.Read(timeout)
		if err != nil {
			s.fail(fmt.Errorf("%w: %w", ErrBackupLost, err))
			return
		}
		switch typ {
		case wire.Heartbeat:
		case wire.Ack:
			m, err := wire.ParseCheckpoint(payload)
			if err != nil {
				s.fail(err)
				return
			}
			select {
			case s.acks <- m:
			default:
				s.fail(fmt.Errorf("unexpected ack for seq %d: %w", m.Seq, wire.ErrFrame))
				return
			}
		case wire.HandoverAck:
			m, err := wire.ParseHandover(payload)
			if err != nil {
				s.fail(err)
				return
			}
			select {
			case s.handoverAck <- m.Epoch:
			default:
				s.fail(fmt.Errorf("unexpected handover ack: %w", wire.ErrFrame))
				return
			}
		case wire.ScrubReport:
			r, err := wire.ParseScrubReport(payload)
			if err != nil {
				s.fail(err)
				return
			}
			s.onScrub(r)
		case wire.Error:
			s.fail(fmt.Errorf("%w: %s", wire.ErrRefused, payload))
			return
		default:
			s.fail(fmt.Errorf("frame type %d from backup: %w", typ, wire.ErrFrame))
			return
		}
	}
}

func (s *session) beatLoop(every time.Duration) {
	defer s.wg.Done()
	if err := s.l.Heartbeat(s.dead, every); err != nil {
		s.fail(fmt.Errorf("%w: heartbeat: %w", ErrBackupLost, err))
	}
}

// send streams one checkpoint: BEGIN, the codec's DATA, the DISK records
// of dd (if not nil), END.
func (s *session) send(enc codec.Encoder, kind wire.Kind, epoch uint64, pfns []uint64, data, state []byte, dd *disk.Delta) (wire.CheckpointMsg, codec.EncodeStats, error) {
	s.seq++
	m := wire.CheckpointMsg{Seq: s.seq, Epoch: epoch, Kind: kind}
	if err := s.l.Write(wire.Begin, m.Marshal(), false); err != nil {
		return m, codec.EncodeStats{}, s.lost(err)
	}
	dw := wire.NewDataWriter(s.l)
	st, err := enc.Encode(dw, epoch, pfns, data, state)
	if err != nil {
		if dw.Err() != nil || dw.N() > 0 || s.isDead() { // the stream broke under the encoder
			return m, st, s.lost(err)
		}
		return m, st, fmt.Errorf("encode epoch %d: %w", epoch, err)
	}
	if dd != nil {
		n, err := s.sendDisk(dd)
		if err != nil {
			return m, st, s.lost(err)
		}
		st.DiskWireBytes = n
	}
	if err := s.l.Write(wire.End, m.Marshal(), true); err != nil {
		return m, st, s.lost(err)
	}
	st.WireBytes = dw.N()
	return m, st, nil
}

// waitAck waits for the ACK of m; anything else ends the session.
func (s *session) waitAck(ctx context.Context, m wire.CheckpointMsg, timeout time.Duration) error {
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case a := <-s.acks:
		if a.Seq != m.Seq || a.Epoch != m.Epoch {
			err := fmt.Errorf("ack seq %d epoch %d, want %d/%d: %w", a.Seq, a.Epoch, m.Seq, m.Epoch, wire.ErrFrame)
			s.fail(err)
			return err
		}
		return nil
	case <-s.dead:
		return s.err
	case <-t.C:
		err := fmt.Errorf("%w: no ack for epoch %d after %v", ErrBackupLost, m.Epoch, timeout)
		s.fail(err)
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (s *session) isDead() bool {
	select {
	case <-s.dead:
		return true
	default:
		return false
	}
}

// lost turns a write error into the session's failure.
func (s *session) lost(err error) error {
	s.fail(fmt.Errorf("%w: %w", ErrBackupLost, err))
	<-s.dead
	return s.err
}
