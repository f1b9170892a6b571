// SPDX-License-Identifier: Apache-2.0

// Package nbd is a minimal NBD client (fixed newstyle, NBD_OPT_GO, simple
// replies) for tests and benchmarks: the simulated guest writes its disk
// through it, as QEMU's nbd blockdev does for a real one.
package nbd

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"time"
)

// Errors of the client.
var (
	// ErrProtocol: the server broke the protocol.
	ErrProtocol = errors.New("nbd: protocol error")
	// ErrServer: the server answered a request with an error code.
	ErrServer = errors.New("nbd: server error")
)

// Client is one NBD connection; requests are sent one at a time.
type Client struct {
	c      net.Conn
	size   int64
	handle uint64
}

// Dial connects to the Unix socket path and negotiates the export.
func Dial(path string) (*Client, error) {
	c, err := net.DialTimeout("unix", path, 5*time.Second)
	if err != nil {
		return nil, err
	}
	cl := &Client{c: c}
	if err := cl.negotiate(); err != nil {
		c.Close()
		return nil, err
	}
	return cl, nil
}

func (cl *Client) negotiate() error {
	var g [18]byte
	if _, err := io.ReadFull(cl.c, g[:]); err != nil {
		return fmt.Errorf("greeting: %w", err)
	}
	if binary.BigEndian.Uint64(g[:]) != 0x4e42444d41474943 || binary.BigEndian.Uint64(g[8:]) != 0x49484156454f5054 {
		return fmt.Errorf("greeting magic: %w", ErrProtocol)
	}
	b := binary.BigEndian.AppendUint32(nil, 3) // fixed newstyle, no zeroes
	b = binary.BigEndian.AppendUint64(b, 0x49484156454f5054)
	b = binary.BigEndian.AppendUint32(b, 7) // NBD_OPT_GO
	b = binary.BigEndian.AppendUint32(b, 8) // data length
	b = binary.BigEndian.AppendUint32(b, 0) // empty name
	b = binary.BigEndian.AppendUint16(b, 1) // one info request
	b = binary.BigEndian.AppendUint16(b, 3) // NBD_INFO_BLOCK_SIZE
	if _, err := cl.c.Write(b); err != nil {
		return err
	}
	for {
		var h [20]byte
		if _, err := io.ReadFull(cl.c, h[:]); err != nil {
			return fmt.Errorf("option reply: %w", err)
		}
		typ, n := binary.BigEndian.Uint32(h[12:]), binary.BigEndian.Uint32(h[16:])
		if n > 4096 {
			return fmt.Errorf("option reply of %d bytes: %w", n, ErrProtocol)
		}
		d := make([]byte, n)
		if _, err := io.ReadFull(cl.c, d); err != nil {
			return err
		}
		switch {
		case typ == 1: // ACK
			if cl.size == 0 {
				return fmt.Errorf("no export info: %w", ErrProtocol)
			}
			return nil
		case typ == 3 && n == 12 && binary.BigEndian.Uint16(d) == 0:
			cl.size = int64(binary.BigEndian.Uint64(d[2:]))
		case typ&(1<<31) != 0:
			return fmt.Errorf("option error %#x: %w", typ, ErrServer)
		}
	}
}

// Size is the export's size.
func (cl *Client) Size() int64 { return cl.size }

// WriteAt writes p at off; fua asks for it durable before the reply.
func (cl *Client) WriteAt(p []byte, off int64, fua bool) error {
	var fl uint16
	if fua {
		fl = 1
	}
	_, err := cl.do(1, fl, off, p, nil)
	return err
}

// ReadAt reads len(p) bytes at off.
func (cl *Client) ReadAt(p []byte, off int64) error {
	_, err := cl.do(0, 0, off, nil, p)
	return err
}

// Flush asks for every completed write to be durable.
func (cl *Client) Flush() error {
	_, err := cl.do(3, 0, 0, nil, nil)
	return err
}

// Raw sends a request with any type, flags and length (no payload) and
// returns the server's error code, for tests of the server's refusals.
func (cl *Client) Raw(typ, flags uint16, off int64, n uint32) (uint32, error) {
	cl.handle++
	if err := cl.send(typ, flags, off, n, nil); err != nil {
		return 0, err
	}
	return cl.reply(nil)
}

func (cl *Client) do(typ, flags uint16, off int64, payload, into []byte) (uint32, error) {
	cl.handle++
	n := len(payload) + len(into)
	if err := cl.send(typ, flags, off, uint32(n), payload); err != nil {
		return 0, err
	}
	code, err := cl.reply(into)
	if err == nil && code != 0 {
		err = fmt.Errorf("request %d at %d: error %d: %w", typ, off, code, ErrServer)
	}
	return code, err
}

func (cl *Client) send(typ, flags uint16, off int64, n uint32, payload []byte) error {
	b := binary.BigEndian.AppendUint32(make([]byte, 0, 28+len(payload)), 0x25609513)
	b = binary.BigEndian.AppendUint16(b, flags)
	b = binary.BigEndian.AppendUint16(b, typ)
	b = binary.BigEndian.AppendUint64(b, cl.handle)
	b = binary.BigEndian.AppendUint64(b, uint64(off))
	b = binary.BigEndian.AppendUint32(b, n)
	_, err := cl.c.Write(append(b, payload...))
	return err
}

func (cl *Client) reply(into []byte) (uint32, error) {
	var h [16]byte
	if _, err := io.ReadFull(cl.c, h[:]); err != nil {
		return 0, err
	}
	if binary.BigEndian.Uint32(h[:]) != 0x67446698 || binary.BigEndian.Uint64(h[8:]) != cl.handle {
		return 0, fmt.Errorf("reply header: %w", ErrProtocol)
	}
	code := binary.BigEndian.Uint32(h[4:])
	if code == 0 && len(into) > 0 {
		if _, err := io.ReadFull(cl.c, into); err != nil {
			return 0, err
		}
	}
	return code, nil
}

// Close sends NBD_CMD_DISC and closes the connection.
func (cl *Client) Close() error {
	cl.handle++
	_ = cl.send(2, 0, 0, 0, nil)
	return cl.c.Close()
}
