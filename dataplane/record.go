// SPDX-License-Identifier: Apache-2.0

package dataplane

import (
	"encoding/binary"
	"fmt"

	"github.com/resilire/resilire/bpf"
)

// RecordHeaderLen is the size of struct frame_hdr, which starts every ring
// record (capture and input log).
const RecordHeaderLen = 40

// Values of FrameHdr.IpSummed (the kernel's CHECKSUM_*).
const (
	ChecksumNone        = 0
	ChecksumUnnecessary = 1
	ChecksumComplete    = 2
	ChecksumPartial     = 3
)

// FrameHdr is the ring-record header, generated from struct frame_hdr.
type FrameHdr = bpf.CaptureFrameHdr

// Record is one parsed ring record. Frame aliases the input buffer.
type Record struct {
	Hdr   FrameHdr
	Frame []byte // the frame from its Ethernet header, Hdr.Len bytes
}

// ParseRecord decodes a ring record: the 40-byte little-endian header and
// exactly Hdr.Len bytes of frame. It checks every field that a reader
// relies on and never panics.
func ParseRecord(b []byte) (*Record, error) {
	if len(b) < RecordHeaderLen {
		return nil, fmt.Errorf("record of %d bytes: %w", len(b), ErrBadRecord)
	}
	var r Record
	if _, err := binary.Decode(b[:RecordHeaderLen], binary.LittleEndian, &r.Hdr); err != nil {
		return nil, fmt.Errorf("record header: %w: %w", ErrBadRecord, err)
	}
	if int(r.Hdr.Len) != len(b)-RecordHeaderLen {
		return nil, fmt.Errorf("record says %d frame bytes, has %d: %w", r.Hdr.Len, len(b)-RecordHeaderLen, ErrBadRecord)
	}
	if r.Hdr.Len < 14 || r.Hdr.Len > 65536 {
		return nil, fmt.Errorf("frame of %d bytes: %w", r.Hdr.Len, ErrBadRecord)
	}
	if r.Hdr.IpSummed > ChecksumPartial {
		return nil, fmt.Errorf("ip_summed %d: %w", r.Hdr.IpSummed, ErrBadRecord)
	}
	if r.Hdr.IpSummed == ChecksumPartial && uint32(r.Hdr.CsumStart)+uint32(r.Hdr.CsumOffset)+2 > r.Hdr.Len {
		return nil, fmt.Errorf("checksum at %d+%d outside %d-byte frame: %w", r.Hdr.CsumStart, r.Hdr.CsumOffset, r.Hdr.Len, ErrBadRecord)
	}
	r.Frame = b[RecordHeaderLen:]
	return &r, nil
}
