// SPDX-License-Identifier: Apache-2.0

package checkpointer

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"
)

// session is the primary's end of one connection to the backup: a reader
// goroutine that collects ACKs and heartbeats, a heartbeat sender, and
// the checkpoint writer. Any failure closes dead; the session is then
// finished and the primary treats the backup as lost.
type session struct {
	l         *link
	id        [sessionIDLen]byte
	committed uint64 // backup's committed epoch at hello time
	seq       uint64
	acks      chan ckptMsg
	dead      chan struct{}
	once      sync.Once
	err       error
	wg        sync.WaitGroup
}

// dialSession connects, says hello and starts the session's goroutines.
func (p *Primary) dialSession(ctx context.Context) (*session, error) {
	conn, err := p.cfg.Dial(ctx)
	if err != nil {
		return nil, fmt.Errorf("dial backup: %w", err)
	}
	s := &session{l: newLink(conn, p.cfg.HeartbeatTimeout), acks: make(chan ckptMsg, 16), dead: make(chan struct{})}
	if _, err := rand.Read(s.id[:]); err != nil {
		conn.Close()
		return nil, fmt.Errorf("session id: %w", err)
	}
	h := hello{MemSize: p.cfg.Domain.MemorySize(), Session: s.id, VM: p.cfg.Domain.Name(), Codec: p.cfg.Codec.Name()}
	if err := s.l.write(frameHello, h.marshal(), true); err != nil {
		conn.Close()
		return nil, fmt.Errorf("hello: %w", err)
	}
	typ, payload, err := s.l.read(p.cfg.HeartbeatTimeout)
	if err == nil && typ == frameError {
		err = fmt.Errorf("%w: %s", ErrRefused, payload)
	} else if err == nil && typ != frameHelloAck {
		err = fmt.Errorf("answer to hello is frame type %d: %w", typ, ErrSession)
	}
	var ack helloAck
	if err == nil {
		ack, err = parseHelloAck(payload)
	}
	if err == nil && ack.Session != s.id {
		err = fmt.Errorf("hello ack for another session: %w", ErrSession)
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
		s.l.close()
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
		typ, payload, err := s.l.read(timeout)
		if err != nil {
			s.fail(fmt.Errorf("%w: %w", ErrBackupLost, err))
			return
		}
		switch typ {
		case frameHeartbeat:
		case frameAck:
			m, err := parseCkptMsg(payload)
			if err != nil {
				s.fail(err)
				return
			}
			select {
			case s.acks <- m:
			default:
				s.fail(fmt.Errorf("unexpected ack for seq %d: %w", m.Seq, ErrFrame))
				return
			}
		case frameError:
			s.fail(fmt.Errorf("%w: %s", ErrRefused, payload))
			return
		default:
			s.fail(fmt.Errorf("frame type %d from backup: %w", typ, ErrFrame))
			return
		}
	}
}

func (s *session) beatLoop(every time.Duration) {
	defer s.wg.Done()
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-s.dead:
			return
		case now := <-t.C:
			var b [8]byte
			binary.LittleEndian.PutUint64(b[:], uint64(now.UnixNano()))
			if err := s.l.write(frameHeartbeat, b[:], true); err != nil {
				s.fail(fmt.Errorf("%w: heartbeat: %w", ErrBackupLost, err))
				return
			}
		}
	}
}

// send streams one checkpoint: BEGIN, the codec's DATA, END.
func (s *session) send(enc Encoder, kind byte, epoch uint64, pfns []uint64, data, state []byte) (ckptMsg, EncodeStats, error) {
	s.seq++
	m := ckptMsg{Seq: s.seq, Epoch: epoch, Kind: kind}
	if err := s.l.write(frameBegin, m.marshal(), false); err != nil {
		return m, EncodeStats{}, s.lost(err)
	}
	dw := &dataWriter{l: s.l}
	st, err := enc.Encode(dw, epoch, pfns, data, state)
	if err != nil {
		if dw.n > 0 || s.isDead() { // the stream broke under the encoder
			return m, st, s.lost(err)
		}
		return m, st, fmt.Errorf("encode epoch %d: %w", epoch, err)
	}
	if err := s.l.write(frameEnd, m.marshal(), true); err != nil {
		return m, st, s.lost(err)
	}
	st.WireBytes = dw.n
	return m, st, nil
}

// waitAck waits for the ACK of m; anything else ends the session.
func (s *session) waitAck(ctx context.Context, m ckptMsg, timeout time.Duration) error {
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case a := <-s.acks:
		if a.Seq != m.Seq || a.Epoch != m.Epoch {
			err := fmt.Errorf("ack seq %d epoch %d, want %d/%d: %w", a.Seq, a.Epoch, m.Seq, m.Epoch, ErrFrame)
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

// DialTCP returns a dialer for the primary: TCP to addr, wrapped in mutual
// TLS when tlsFiles is enabled.
func DialTCP(addr string, tlsFiles TLSFiles, timeout time.Duration) (func(context.Context) (net.Conn, error), error) {
	d := &net.Dialer{Timeout: timeout, KeepAlive: 15 * time.Second}
	if !tlsFiles.Enabled() {
		return func(ctx context.Context) (net.Conn, error) { return d.DialContext(ctx, "tcp", addr) }, nil
	}
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("backup address %q: %w", addr, err)
	}
	cfg, err := tlsFiles.ClientConfig(host)
	if err != nil {
		return nil, err
	}
	return func(ctx context.Context) (net.Conn, error) {
		td := &tls.Dialer{NetDialer: d, Config: cfg}
		return td.DialContext(ctx, "tcp", addr)
	}, nil
}
