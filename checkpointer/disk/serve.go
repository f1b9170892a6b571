// SPDX-License-Identifier: Apache-2.0

package disk

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// backend is what an NBD connection reads and writes: the Export's image,
// or a memory image in the fuzzer.
type backend interface {
	imageSize() int64
	readAt(p []byte, off int64) error
	// writeAt writes p at off and records it for the epoch; fua makes it
	// durable before returning.
	writeAt(p []byte, off int64, fua bool) error
	flush() error
	// begin and end bracket one request (the in-flight count).
	begin()
	end()
}

// serveConn runs one NBD connection: handshake, then requests answered in
// order until NBD_CMD_DISC, EOF or a protocol error. A request the export
// cannot serve gets an error reply (the guest sees an I/O error); a
// request that breaks the framing ends the connection.
func serveConn(rw io.ReadWriter, b backend) error {
	if err := handshake(rw, b.imageSize()); err != nil {
		if errors.Is(err, errAbort) {
			return nil
		}
		return err
	}
	r := bufio.NewReaderSize(rw, 64<<10)
	var hdr [28]byte
	var buf []byte
	for {
		if _, err := io.ReadFull(r, hdr[:]); err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return fmt.Errorf("nbd request: %w", err)
		}
		if binary.BigEndian.Uint32(hdr[:]) != reqMagic {
			return fmt.Errorf("request magic: %w", ErrProtocol)
		}
		flags, typ := binary.BigEndian.Uint16(hdr[4:]), binary.BigEndian.Uint16(hdr[6:])
		handle := binary.BigEndian.Uint64(hdr[8:])
		off, n := binary.BigEndian.Uint64(hdr[16:]), binary.BigEndian.Uint32(hdr[24:])
		if typ == cmdWrite && n > MaxRequest {
			// Its payload cannot be skipped safely: drop the connection.
			return fmt.Errorf("write of %d bytes: %w", n, ErrProtocol)
		}
		if typ == cmdDisc {
			return nil
		}
		buf = buf[:0]
		var code uint32 = errInval
		if ok := typ == cmdWrite || (typ == cmdRead && n <= MaxRequest); ok {
			if cap(buf) < int(n) {
				buf = make([]byte, n)
			}
			buf = buf[:n]
		}
		if typ == cmdWrite {
			if _, err := io.ReadFull(r, buf); err != nil {
				return fmt.Errorf("nbd write payload: %w", err)
			}
		}
		if len(buf) == int(n) {
			b.begin()
			code = do(b, typ, flags, off, buf)
			b.end()
		}
		out := binary.BigEndian.AppendUint32(make([]byte, 0, 16+len(buf)), replyMagic)
		out = binary.BigEndian.AppendUint32(out, code)
		out = binary.BigEndian.AppendUint64(out, handle)
		if typ == cmdRead && code == 0 {
			out = append(out, buf...)
		}
		if _, err := rw.Write(out); err != nil {
			return fmt.Errorf("nbd reply: %w", err)
		}
	}
}

// do executes one request and returns the NBD error code (0: success).
func do(b backend, typ, flags uint16, off uint64, buf []byte) uint32 {
	if flags&^cmdFUA != 0 {
		return errInval
	}
	switch typ {
	case cmdRead, cmdWrite:
		n := uint64(len(buf))
		if n == 0 || n > MaxRequest {
			return errInval
		}
		if off > uint64(b.imageSize()) || n > uint64(b.imageSize())-off {
			if typ == cmdWrite {
				return errNoSpc
			}
			return errInval
		}
		var err error
		if typ == cmdRead {
			err = b.readAt(buf, int64(off))
		} else {
			err = b.writeAt(buf, int64(off), flags&cmdFUA != 0)
		}
		if err != nil {
			return errIO
		}
		return 0
	case cmdFlush:
		if off != 0 || len(buf) != 0 {
			return errInval
		}
		if b.flush() != nil {
			return errIO
		}
		return 0
	}
	return errInval
}
