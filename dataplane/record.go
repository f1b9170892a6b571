// SPDX-License-Identifier: Apache-2.0

package dataplane

import (
	"encoding/binary"
	"errors"
	"fmt"
	"unsafe"

	"github.com/resilire/resilire/bpf"
)

// RecordHeaderLen is the size of struct frame_hdr, which starts every ring
// record (capture and input log), taken from the generated type.
const RecordHeaderLen = int(unsafe.Sizeof(FrameHdr{}))

// Bits of FrameHdr.Flags (C enum frame_flags).
const (
	// FrameLogBroken: input log records were lost before this one.
	FrameLogBroken = uint8(bpf.InputlogFrameFlagsFRAME_LOG_BROKEN)
	// FrameMetaUnknown: the record comes from the portable input log, which
	// cannot read ip_summed, csum_start/offset or gso_type (all 0); see
	// CompleteChecksum.
	FrameMetaUnknown = uint8(bpf.InputlogFrameFlagsFRAME_META_UNKNOWN)
	// FrameInternal: a frame from a VDEchp group peer; Hdr.Colour is the
	// sender's round modulo 4096 (see wire.ColourDiff). After a rollback to
	// round R the backup replays an internal frame only if its colour is
	// <= R (it was in transit for the cut); the others are re-sent by
	// their senders.
	FrameInternal = uint8(bpf.InputlogFrameFlagsFRAME_INTERNAL)
)

// MaxFrameLen bounds a captured frame: a GSO super-packet is at most 64 KiB
// (MAX_CAP in bpf/resilire.h).
const MaxFrameLen = 65536

// MinFrameLen is an Ethernet header; anything shorter cannot be forwarded.
const MinFrameLen = 14

// Values of FrameHdr.IpSummed (the kernel's CHECKSUM_*).
const (
	ChecksumNone        = 0
	ChecksumUnnecessary = 1
	ChecksumComplete    = 2
	ChecksumPartial     = 3
)

// Errors returned by ParseRecord. Every error it returns wraps both
// ErrBadRecord and exactly one of these, with the offending values.
var (
	// ErrShortRecord means the record is shorter than its 40-byte header.
	ErrShortRecord = errors.New("record shorter than frame header")
	// ErrRecordLength means the header's len disagrees with the bytes that follow.
	ErrRecordLength = errors.New("record length mismatch")
	// ErrFrameSize means the frame is shorter than MinFrameLen or longer
	// than MaxFrameLen.
	ErrFrameSize = errors.New("frame size out of range")
	// ErrChecksum means the checksum metadata (ip_summed, csum_start,
	// csum_offset) is inconsistent with the frame.
	ErrChecksum = errors.New("bad checksum metadata")
	// ErrColour means the colour is wider than the 12-bit tag, or set on a
	// frame that is not FrameInternal.
	ErrColour = errors.New("bad colour")
)

// FrameHdr is the ring-record header, generated from struct frame_hdr.
type FrameHdr = bpf.CaptureFrameHdr

// Record is one parsed ring record. Frame aliases the input buffer.
type Record struct {
	Hdr   FrameHdr
	Frame []byte // the frame from its Ethernet header, Hdr.Len bytes
}

// ParseRecord decodes a ring record: the 40-byte little-endian header and
// exactly Hdr.Len bytes of frame. It rejects anything the release path
// could not write safely, never panics and does not allocate unless it
// fails. The returned Frame aliases b.
func ParseRecord(b []byte) (Record, error) {
	if len(b) < RecordHeaderLen {
		return Record{}, fmt.Errorf("%w: %w: %d bytes", ErrBadRecord, ErrShortRecord, len(b))
	}
	h := decodeFrameHdr(b)
	if uint64(h.Len) != uint64(len(b)-RecordHeaderLen) {
		return Record{}, fmt.Errorf("%w: %w: header says %d, record carries %d",
			ErrBadRecord, ErrRecordLength, h.Len, len(b)-RecordHeaderLen)
	}
	if err := validateFrameHdr(&h); err != nil {
		return Record{}, err
	}
	return Record{Hdr: h, Frame: b[RecordHeaderLen:]}, nil
}

// validateFrameHdr checks a header on its own (its Len is the frame length).
func validateFrameHdr(h *FrameHdr) error {
	if h.Len < MinFrameLen || h.Len > MaxFrameLen {
		return fmt.Errorf("%w: %w: %d bytes", ErrBadRecord, ErrFrameSize, h.Len)
	}
	if h.IpSummed > ChecksumPartial {
		return fmt.Errorf("%w: %w: ip_summed %d", ErrBadRecord, ErrChecksum, h.IpSummed)
	}
	if h.IpSummed == ChecksumPartial {
		// The checksum field (2 bytes at start+offset) must lie inside the
		// frame, behind the Ethernet header.
		if end := uint32(h.CsumStart) + uint32(h.CsumOffset) + 2; h.CsumStart < MinFrameLen || end > h.Len {
			return fmt.Errorf("%w: %w: csum_start %d csum_offset %d in %d-byte frame",
				ErrBadRecord, ErrChecksum, h.CsumStart, h.CsumOffset, h.Len)
		}
	}
	// Colour 0 is a valid internal colour (round 4096 wraps to it), so
	// only a colour on an external frame is inconsistent.
	if h.Colour > colourMask || (h.Colour != 0 && h.Flags&FrameInternal == 0) {
		return fmt.Errorf("%w: %w: colour %d flags %#x", ErrBadRecord, ErrColour, h.Colour, h.Flags)
	}
	return nil
}

// decodeFrameHdr reads the header field by field: binary.Decode of the
// struct goes through reflection, too slow for the per-frame path.
// TestRecordLayout checks the offsets against the generated type.
func decodeFrameHdr(b []byte) FrameHdr {
	_ = b[RecordHeaderLen-1]
	le := binary.LittleEndian
	return FrameHdr{
		Epoch:      le.Uint64(b[0:]),
		TstampNs:   le.Uint64(b[8:]),
		Len:        le.Uint32(b[16:]),
		Ifindex:    le.Uint32(b[20:]),
		GsoSize:    le.Uint16(b[24:]),
		GsoSegs:    le.Uint16(b[26:]),
		GsoType:    le.Uint16(b[28:]),
		IpSummed:   b[30],
		Flags:      b[31],
		CsumStart:  le.Uint16(b[32:]),
		CsumOffset: le.Uint16(b[34:]),
		Colour:     le.Uint32(b[36:]),
	}
}

// AppendRecord appends h followed by frame to dst in the ring-record
// layout, with h.Len set from frame. The release path stores held frames
// in this form, and tests use it to build records.
func AppendRecord(dst []byte, h FrameHdr, frame []byte) []byte {
	le := binary.LittleEndian
	var b [RecordHeaderLen]byte
	le.PutUint64(b[0:], h.Epoch)
	le.PutUint64(b[8:], h.TstampNs)
	le.PutUint32(b[16:], uint32(len(frame)))
	le.PutUint32(b[20:], h.Ifindex)
	le.PutUint16(b[24:], h.GsoSize)
	le.PutUint16(b[26:], h.GsoSegs)
	le.PutUint16(b[28:], h.GsoType)
	b[30] = h.IpSummed
	b[31] = h.Flags
	le.PutUint16(b[32:], h.CsumStart)
	le.PutUint16(b[34:], h.CsumOffset)
	le.PutUint32(b[36:], h.Colour)
	dst = append(dst, b[:]...)
	return append(dst, frame...)
}
