// SPDX-License-Identifier: Apache-2.0

package wire

import (
	"fmt"
	"time"
)

// DataWriter chops a codec's output into DATA frames (not flushed: END
// flushes).
type DataWriter struct {
	c   *Conn
	n   int64
	err error // the connection's first write error
}

// NewDataWriter writes DATA frames on c.
func NewDataWriter(c *Conn) *DataWriter { return &DataWriter{c: c} }

// Write implements io.Writer.
func (d *DataWriter) Write(p []byte) (int, error) {
	total := 0
	for len(p) > 0 {
		chunk := p[:min(len(p), MaxDataPayload)]
		if err := d.c.Write(Data, chunk, false); err != nil {
			if d.err == nil {
				d.err = err
			}
			return total, err
		}
		total += len(chunk)
		d.n += int64(len(chunk))
		p = p[len(chunk):]
	}
	return total, nil
}

// N is the number of codec bytes written.
func (d *DataWriter) N() int64 { return d.n }

// Err is the connection's first write error (nil: every write reached
// the connection): an encoder error after it is the stream's, not the
// codec's.
func (d *DataWriter) Err() error { return d.err }

// DataReader feeds the payload of consecutive DATA frames to a decoder.
// Heartbeats in between call OnBeat, INPUT frames OnInput (nil: refused);
// any other frame ends the checkpoint early (ErrTruncated) and is kept
// for Next.
type DataReader struct {
	c       *Conn
	timeout time.Duration
	// OnBeat is called for every HEARTBEAT frame; nil: ignored.
	OnBeat func()
	// OnInput is called with every INPUT payload; nil: INPUT is refused.
	OnInput func([]byte) error
	cur     []byte
	n       int64
	pending struct {
		ok      bool
		typ     Type
		payload []byte
	}
}

// NewDataReader reads DATA frames from c, each within timeout (0: none).
func NewDataReader(c *Conn, timeout time.Duration) *DataReader {
	return &DataReader{c: c, timeout: timeout}
}

// N is the number of codec bytes read.
func (d *DataReader) N() int64 { return d.n }

// other handles a frame that is not DATA; it reports whether the frame was
// consumed (heartbeat, input).
func (d *DataReader) other(typ Type, payload []byte) (bool, error) {
	switch typ {
	case Heartbeat:
		if d.OnBeat != nil {
			d.OnBeat()
		}
		return true, nil
	case Input:
		if d.OnInput == nil {
			return true, fmt.Errorf("input frame: %w", ErrFrame)
		}
		return true, d.OnInput(payload)
	}
	return false, nil
}

// Read implements io.Reader over the DATA payloads.
func (d *DataReader) Read(p []byte) (int, error) {
	for len(d.cur) == 0 {
		if d.pending.ok {
			return 0, fmt.Errorf("frame type %d inside a checkpoint: %w", d.pending.typ, ErrTruncated)
		}
		typ, payload, err := d.c.Read(d.timeout)
		if err != nil {
			return 0, err
		}
		if typ == Data {
			d.cur = payload
			continue
		}
		consumed, err := d.other(typ, payload)
		if err != nil {
			return 0, err
		}
		if !consumed {
			d.pending.ok, d.pending.typ = true, typ
			d.pending.payload = append(d.pending.payload[:0], payload...)
		}
	}
	n := copy(p, d.cur)
	d.cur = d.cur[n:]
	d.n += int64(n)
	return n, nil
}

// Next returns the frame after the checkpoint's last DATA byte, skipping
// heartbeats and input records. Leftover DATA bytes mean the codec stopped
// early: ErrCorrupt.
func (d *DataReader) Next() (Type, []byte, error) {
	if len(d.cur) > 0 {
		return 0, nil, fmt.Errorf("%d bytes after the checkpoint's end: %w", len(d.cur), ErrCorrupt)
	}
	if d.pending.ok {
		d.pending.ok = false
		return d.pending.typ, d.pending.payload, nil
	}
	for {
		typ, payload, err := d.c.Read(d.timeout)
		if err != nil {
			return 0, nil, err
		}
		if typ == Data {
			return 0, nil, fmt.Errorf("%d bytes after the checkpoint's end: %w", len(payload), ErrCorrupt)
		}
		consumed, err := d.other(typ, payload)
		if err != nil {
			return 0, nil, err
		}
		if !consumed {
			return typ, payload, nil
		}
	}
}
