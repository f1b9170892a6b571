// SPDX-License-Identifier: Apache-2.0

package netbuf

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// HeaderLen is the size of the frame_hdr that precedes every frame in a
// capture ring record (bpf/resilire.h, CONTRACTS.md).
const HeaderLen = 40

// MaxFrameLen bounds a captured frame: a GSO super-packet is at most 64 KiB.
const MaxFrameLen = 65536

// minFrameLen is an Ethernet header; anything shorter cannot be forwarded.
const minFrameLen = 14

// Checksum states of a captured skb (the kernel's CHECKSUM_* values).
const (
	SummedNone        = 0
	SummedUnnecessary = 1
	SummedComplete    = 2
	SummedPartial     = 3
)

// Errors returned by ParseRecord; each is wrapped with the offending values.
var (
	// ErrShortRecord means the record is shorter than its 40-byte header.
	ErrShortRecord = errors.New("record shorter than frame header")
	// ErrLength means the header's len disagrees with the bytes that follow.
	ErrLength = errors.New("record length mismatch")
	// ErrFrameSize means the frame is shorter than an Ethernet header or
	// longer than MaxFrameLen.
	ErrFrameSize = errors.New("frame size out of range")
	// ErrChecksum means the checksum metadata is inconsistent with the frame.
	ErrChecksum = errors.New("bad checksum metadata")
)

// Header is the decoded frame_hdr of one capture record.
type Header struct {
	Epoch      uint64 // epoch read from the port's config map at capture
	TstampNS   uint64 // bpf_ktime_get_ns() at capture
	Len        uint32 // frame length in bytes
	Ifindex    uint32 // guest port ifindex
	GSOSize    uint16 // skb gso_size, 0 if not GSO
	GSOSegs    uint16 // skb gso_segs
	GSOType    uint16 // raw skb gso_type bits if known, else 0
	IPSummed   uint8  // SummedNone .. SummedPartial
	Flags      uint8  // bit0: epoch log broken before this frame
	CsumStart  uint16 // checksum start, relative to the MAC header
	CsumOffset uint16 // checksum field offset from CsumStart
}

// Record is one parsed capture record. Frame aliases the input buffer.
type Record struct {
	Header
	Frame []byte
}

// ParseRecord decodes one ring record (header + frame). It never panics and
// rejects anything the release path could not write safely. The returned
// Frame aliases raw.
func ParseRecord(raw []byte) (Record, error) {
	if len(raw) < HeaderLen {
		return Record{}, fmt.Errorf("%w: %d bytes", ErrShortRecord, len(raw))
	}
	h := decodeHeader(raw)
	if uint64(h.Len) != uint64(len(raw)-HeaderLen) {
		return Record{}, fmt.Errorf("%w: header says %d, record carries %d", ErrLength, h.Len, len(raw)-HeaderLen)
	}
	if err := h.validate(); err != nil {
		return Record{}, err
	}
	return Record{Header: h, Frame: raw[HeaderLen:]}, nil
}

// validate checks the header on its own (its Len is the frame length).
func (h *Header) validate() error {
	if h.Len < minFrameLen || h.Len > MaxFrameLen {
		return fmt.Errorf("%w: %d bytes", ErrFrameSize, h.Len)
	}
	if h.IPSummed > SummedPartial {
		return fmt.Errorf("%w: ip_summed %d", ErrChecksum, h.IPSummed)
	}
	if h.IPSummed == SummedPartial {
		// The checksum field (2 bytes at start+offset) must lie inside the frame.
		if end := uint32(h.CsumStart) + uint32(h.CsumOffset) + 2; h.CsumStart < minFrameLen || end > h.Len {
			return fmt.Errorf("%w: csum_start %d csum_offset %d in %d-byte frame", ErrChecksum, h.CsumStart, h.CsumOffset, h.Len)
		}
	}
	return nil
}

func decodeHeader(b []byte) Header {
	le := binary.LittleEndian
	return Header{
		Epoch:      le.Uint64(b[0:]),
		TstampNS:   le.Uint64(b[8:]),
		Len:        le.Uint32(b[16:]),
		Ifindex:    le.Uint32(b[20:]),
		GSOSize:    le.Uint16(b[24:]),
		GSOSegs:    le.Uint16(b[26:]),
		GSOType:    le.Uint16(b[28:]),
		IPSummed:   b[30],
		Flags:      b[31],
		CsumStart:  le.Uint16(b[32:]),
		CsumOffset: le.Uint16(b[34:]),
	}
}

// AppendRecord encodes h followed by frame in the ring-record layout. It
// sets h.Len from frame. The release path stores held frames in this form,
// and tests use it to build records.
func AppendRecord(dst []byte, h Header, frame []byte) []byte {
	le := binary.LittleEndian
	var b [HeaderLen]byte
	le.PutUint64(b[0:], h.Epoch)
	le.PutUint64(b[8:], h.TstampNS)
	le.PutUint32(b[16:], uint32(len(frame)))
	le.PutUint32(b[20:], h.Ifindex)
	le.PutUint16(b[24:], h.GSOSize)
	le.PutUint16(b[26:], h.GSOSegs)
	le.PutUint16(b[28:], h.GSOType)
	b[30] = h.IPSummed
	b[31] = h.Flags
	le.PutUint16(b[32:], h.CsumStart)
	le.PutUint16(b[34:], h.CsumOffset)
	dst = append(dst, b[:]...)
	return append(dst, frame...)
}
