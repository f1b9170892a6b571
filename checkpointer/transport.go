// SPDX-License-Identifier: Apache-2.0

package checkpointer

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"
)

// One TCP (or TLS) connection per protected VM carries everything. Each
// frame is an 8-byte header, type u8, three zero bytes, payload length
// u32 little endian, then the payload. Lengths are bounded per type, so a
// peer can never make the reader allocate more than maxDataPayload.
//
// A checkpoint travels as BEGIN, DATA..., END; the codec stream inside the
// DATA frames is self-delimiting, and END must follow exactly where the
// codec stopped. HEARTBEAT frames may be interleaved anywhere.

// Frame types.
const (
	frameHello     byte = 1 // primary -> backup, first frame
	frameHelloAck  byte = 2 // backup -> primary, answer to hello
	frameBegin     byte = 3 // primary: a checkpoint starts
	frameData      byte = 4 // primary: codec bytes
	frameEnd       byte = 5 // primary: the checkpoint is complete
	frameAck       byte = 6 // backup: checkpoint applied
	frameHeartbeat byte = 7 // both ways, periodically
	frameError     byte = 8 // either: why the session is being closed
	frameInput     byte = 9 // primary: one input-log record (inputlog.go), anywhere
)

const (
	frameHeaderLen    = 8
	maxDataPayload    = 256 << 10
	maxControlPayload = 1 << 10
)

// maxPayload is the largest payload accepted for a frame type; 0 means
// the type is unknown.
func maxPayload(typ byte) int {
	switch typ {
	case frameData:
		return maxDataPayload
	case frameInput:
		return maxInputPayload
	case frameHello, frameHelloAck, frameBegin, frameEnd, frameAck, frameHeartbeat, frameError:
		return maxControlPayload
	}
	return 0
}

// readFrame reads one frame into buf (grown up to maxDataPayload) and
// returns its type and payload, valid until the next call.
func readFrame(r io.Reader, buf []byte) (typ byte, payload []byte, nbuf []byte, err error) {
	var hdr [frameHeaderLen]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		if errors.Is(err, io.ErrUnexpectedEOF) {
			err = fmt.Errorf("%w: frame header: %w", ErrTruncated, err)
		}
		return 0, nil, buf, err // a clean io.EOF between frames stays io.EOF
	}
	typ = hdr[0]
	n := binary.LittleEndian.Uint32(hdr[4:])
	limit := maxPayload(typ)
	if limit == 0 || hdr[1]|hdr[2]|hdr[3] != 0 {
		return 0, nil, buf, fmt.Errorf("frame type %d: %w", typ, ErrFrame)
	}
	if n > uint32(limit) {
		return 0, nil, buf, fmt.Errorf("frame type %d length %d over %d: %w", typ, n, limit, ErrFrame)
	}
	if cap(buf) < int(n) {
		buf = make([]byte, n, max(int(n), 4<<10))
	}
	payload = buf[:n]
	if _, err := io.ReadFull(r, payload); err != nil {
		return 0, nil, buf, eofIsTruncated(err)
	}
	return typ, payload, buf, nil
}

// appendFrame appends a frame header for a payload of n bytes.
func appendFrameHeader(dst []byte, typ byte, n int) []byte {
	return binary.LittleEndian.AppendUint32(append(dst, typ, 0, 0, 0), uint32(n))
}

// link is one side of a connection: buffered, with writes serialised so
// heartbeats can interleave with checkpoint data at frame boundaries.
type link struct {
	conn    net.Conn
	r       *bufio.Reader
	rbuf    []byte
	wmu     sync.Mutex
	w       *bufio.Writer
	wto     time.Duration // per-write deadline
	hdr     []byte
	written int64 // bytes written, under wmu
}

func newLink(c net.Conn, writeTimeout time.Duration) *link {
	return &link{
		conn: c,
		r:    bufio.NewReaderSize(c, 64<<10),
		w:    bufio.NewWriterSize(c, 64<<10),
		wto:  writeTimeout,
	}
}

// read returns the next frame; the payload is valid until the next read.
// A zero timeout means no deadline.
func (l *link) read(timeout time.Duration) (byte, []byte, error) {
	if timeout > 0 {
		l.conn.SetReadDeadline(time.Now().Add(timeout))
	}
	typ, p, buf, err := readFrame(l.r, l.rbuf)
	l.rbuf = buf
	return typ, p, err
}

// write sends one frame; flush pushes it (and anything buffered) out.
func (l *link) write(typ byte, payload []byte, flush bool) error {
	l.wmu.Lock()
	defer l.wmu.Unlock()
	return l.writeLocked(typ, payload, flush)
}

func (l *link) writeLocked(typ byte, payload []byte, flush bool) error {
	if l.wto > 0 {
		l.conn.SetWriteDeadline(time.Now().Add(l.wto))
	}
	l.hdr = appendFrameHeader(l.hdr[:0], typ, len(payload))
	if _, err := l.w.Write(l.hdr); err != nil {
		return err
	}
	if _, err := l.w.Write(payload); err != nil {
		return err
	}
	l.written += int64(len(l.hdr) + len(payload))
	if flush {
		return l.w.Flush()
	}
	return nil
}

// bytesWritten reports the bytes handed to the connection so far.
func (l *link) bytesWritten() int64 {
	l.wmu.Lock()
	defer l.wmu.Unlock()
	return l.written
}

func (l *link) close() error { return l.conn.Close() }

// dataWriter chops the codec's output into DATA frames.
type dataWriter struct {
	l *link
	n int64
}

func (d *dataWriter) Write(p []byte) (int, error) {
	total := 0
	for len(p) > 0 {
		chunk := p[:min(len(p), maxDataPayload)]
		if err := d.l.write(frameData, chunk, false); err != nil {
			return total, err
		}
		total += len(chunk)
		d.n += int64(len(chunk))
		p = p[len(chunk):]
	}
	return total, nil
}

// dataReader feeds the payload of consecutive DATA frames to the decoder.
// Heartbeats in between are passed to onOther; any other frame ends the
// checkpoint early (ErrTruncated) and is kept for the caller in pending.
type dataReader struct {
	l       *link
	timeout time.Duration
	onBeat  func()
	onInput func([]byte) error // INPUT frames inside a checkpoint; nil: refused
	cur     []byte
	n       int64
	pending struct {
		ok      bool
		typ     byte
		payload []byte
	}
}

func (d *dataReader) Read(p []byte) (int, error) {
	for len(d.cur) == 0 {
		if d.pending.ok {
			return 0, fmt.Errorf("frame type %d inside a checkpoint: %w", d.pending.typ, ErrTruncated)
		}
		typ, payload, err := d.l.read(d.timeout)
		if err != nil {
			return 0, err
		}
		switch typ {
		case frameData:
			d.cur = payload
		case frameHeartbeat:
			d.onBeat()
		case frameInput:
			if d.onInput == nil {
				return 0, fmt.Errorf("input frame: %w", ErrFrame)
			}
			if err := d.onInput(payload); err != nil {
				return 0, err
			}
		default:
			d.pending.ok, d.pending.typ = true, typ
			d.pending.payload = append(d.pending.payload[:0], payload...)
		}
	}
	n := copy(p, d.cur)
	d.cur = d.cur[n:]
	d.n += int64(n)
	return n, nil
}

// next returns the frame after the checkpoint's last DATA byte, skipping
// heartbeats. Leftover DATA bytes mean the codec stopped early: corrupt.
func (d *dataReader) next() (byte, []byte, error) {
	if len(d.cur) > 0 {
		return 0, nil, fmt.Errorf("%d bytes after the checkpoint's end: %w", len(d.cur), ErrCorrupt)
	}
	if d.pending.ok {
		d.pending.ok = false
		return d.pending.typ, d.pending.payload, nil
	}
	for {
		typ, payload, err := d.l.read(d.timeout)
		if err != nil {
			return 0, nil, err
		}
		switch typ {
		case frameHeartbeat:
			d.onBeat()
		case frameInput:
			if d.onInput == nil {
				return 0, nil, fmt.Errorf("input frame: %w", ErrFrame)
			}
			if err := d.onInput(payload); err != nil {
				return 0, nil, err
			}
		case frameData:
			return 0, nil, fmt.Errorf("%d bytes after the checkpoint's end: %w", len(payload), ErrCorrupt)
		default:
			return typ, payload, nil
		}
	}
}
