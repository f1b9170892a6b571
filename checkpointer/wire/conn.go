// SPDX-License-Identifier: Apache-2.0

package wire

import (
	"bufio"
	"encoding/binary"
	"net"
	"sync"
	"time"
)

// Conn is one side of a replication connection: buffered, with writes
// serialised so heartbeats and input records interleave with checkpoint
// data at frame boundaries. Reads are for one goroutine at a time.
type Conn struct {
	conn net.Conn
	r    *bufio.Reader
	rbuf []byte
	wmu  sync.Mutex
	w    *bufio.Writer
	wto  time.Duration // per-write deadline; 0: none
	hdr  []byte
}

// NewConn wraps c. writeTimeout bounds every write (0: no deadline), so a
// peer that stops reading cannot block the writer for ever.
func NewConn(c net.Conn, writeTimeout time.Duration) *Conn {
	return &Conn{
		conn: c,
		r:    bufio.NewReaderSize(c, 64<<10),
		w:    bufio.NewWriterSize(c, 64<<10),
		wto:  writeTimeout,
	}
}

// Read returns the next frame; the payload is valid until the next Read.
// A zero timeout means no deadline.
func (c *Conn) Read(timeout time.Duration) (Type, []byte, error) {
	if timeout > 0 {
		if err := c.conn.SetReadDeadline(time.Now().Add(timeout)); err != nil {
			return 0, nil, err
		}
	}
	typ, p, buf, err := ReadFrame(c.r, c.rbuf)
	c.rbuf = buf
	return typ, p, err
}

// Write sends one frame; flush pushes it (and anything buffered) out.
func (c *Conn) Write(typ Type, payload []byte, flush bool) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.wto > 0 {
		if err := c.conn.SetWriteDeadline(time.Now().Add(c.wto)); err != nil {
			return err
		}
	}
	c.hdr = AppendHeader(c.hdr[:0], typ, len(payload))
	if _, err := c.w.Write(c.hdr); err != nil {
		return err
	}
	if _, err := c.w.Write(payload); err != nil {
		return err
	}
	if flush {
		return c.w.Flush()
	}
	return nil
}

// Close closes the connection; a blocked Read or Write returns.
func (c *Conn) Close() error { return c.conn.Close() }

// RemoteAddr is the peer's address.
func (c *Conn) RemoteAddr() net.Addr { return c.conn.RemoteAddr() }

// Heartbeat sends a HEARTBEAT frame (the send time, for the log) every
// interval until stop is closed or a write fails, and returns that error
// (nil after stop). Both ends run one: any frame proves its sender alive.
func (c *Conn) Heartbeat(stop <-chan struct{}, every time.Duration) error {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return nil
		case now := <-t.C:
			var b [8]byte
			binary.LittleEndian.PutUint64(b[:], uint64(now.UnixNano()))
			if err := c.Write(Heartbeat, b[:], true); err != nil {
				return err
			}
		}
	}
}

// Flush pushes out what earlier writes buffered.
func (c *Conn) Flush() error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	return c.w.Flush()
}
