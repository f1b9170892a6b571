// SPDX-License-Identifier: Apache-2.0

package wire

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// Type is a frame's type byte.
type Type byte

// Frame types.
const (
	Hello     Type = 1 // primary -> backup, first frame
	HelloAck  Type = 2 // backup -> primary, answer to hello
	Begin     Type = 3 // primary: a checkpoint starts
	Data      Type = 4 // primary: codec bytes
	End       Type = 5 // primary: the checkpoint is complete
	Ack       Type = 6 // backup: checkpoint applied
	Heartbeat Type = 7 // both ways, periodically
	Error     Type = 8 // either: why the session is being closed
	Input     Type = 9 // primary: one input-log record, anywhere
	// Scrub (primary) follows the END of the epoch it describes;
	// ScrubReport (backup) answers it (scrub.go).
	Scrub       Type = 10
	ScrubReport Type = 11
	// Disk (primary): disk writes of the checkpoint, after its DATA.
	Disk Type = 12
	// Handover (primary): planned switchover; the guest is stopped at the
	// checkpoint the backup last acknowledged, which it must now resume
	// without fencing. HandoverAck (backup) accepts it, before activating.
	Handover    Type = 13
	HandoverAck Type = 14
)

// Frame sizes.
const (
	// HeaderLen is the size of a frame header.
	HeaderLen = 8
	// MaxDataPayload bounds a DATA frame.
	MaxDataPayload = 256 << 10
	// MaxControlPayload bounds hello, checkpoint, heartbeat and error frames.
	MaxControlPayload = 1 << 10
)

// MaxPayload is the largest payload accepted for a frame type; 0 means the
// type is unknown.
func MaxPayload(typ Type) int {
	switch typ {
	case Data:
		return MaxDataPayload
	case Input:
		return MaxInputPayload
	case Scrub, ScrubReport:
		return MaxScrubPayload
	case Disk:
		return MaxDiskPayload
	case Hello, HelloAck, Begin, End, Ack, Heartbeat, Error, Handover, HandoverAck:
		return MaxControlPayload
	}
	return 0
}

// ReadFrame reads one frame into buf (grown up to MaxDataPayload) and
// returns its type, its payload (valid until buf is reused) and buf. A
// clean io.EOF between frames stays io.EOF; an EOF inside one is
// ErrTruncated.
func ReadFrame(r io.Reader, buf []byte) (typ Type, payload []byte, nbuf []byte, err error) {
	var hdr [HeaderLen]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		if errors.Is(err, io.ErrUnexpectedEOF) {
			err = fmt.Errorf("%w: frame header: %w", ErrTruncated, err)
		}
		return 0, nil, buf, err
	}
	typ = Type(hdr[0])
	n := binary.LittleEndian.Uint32(hdr[4:])
	limit := MaxPayload(typ)
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
		return 0, nil, buf, TruncatedOnEOF(err)
	}
	return typ, payload, buf, nil
}

// AppendHeader appends a frame header for a payload of n bytes.
func AppendHeader(dst []byte, typ Type, n int) []byte {
	return binary.LittleEndian.AppendUint32(append(dst, byte(typ), 0, 0, 0), uint32(n))
}
