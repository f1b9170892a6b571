// SPDX-License-Identifier: Apache-2.0

package wire

import (
	"encoding/binary"
	"fmt"
)

// INPUT payload: epoch u64 | flags u8 | [colour u16, internal frames
// only] | frame (empty for a pure marker).
const (
	inputFixedLen = 9
	// MaxInputFrame bounds one logged frame (a GSO super-packet).
	MaxInputFrame = 65536
	// MaxInputPayload bounds an INPUT frame.
	MaxInputPayload = inputFixedLen + MaxInputFrame
	minInputFrame   = 14 // an Ethernet header
	inputBroken     = 1  // flag: the log of this epoch lost frames before this one
	inputInternal   = 2  // flag: a frame from a VDEchp group peer; its colour follows
	// MaxColour is the largest colour (a round modulo 4096).
	MaxColour = 0xfff
)

// InputRecord is one frame sent to the guest, with the epoch it arrived in.
type InputRecord struct {
	Epoch uint64
	// Broken marks the epoch's log incomplete (frames were lost before
	// this one); Frame may then be empty.
	Broken bool
	// Internal marks a frame from another member of a VDEchp group, sent
	// in the sender's round Colour (modulo 4096).
	Internal bool
	Colour   uint16
	Frame    []byte
}

// Marshal appends the INPUT payload of r to dst.
func (r InputRecord) Marshal(dst []byte) []byte {
	var fl byte
	if r.Broken {
		fl = inputBroken
	}
	if r.Internal {
		fl |= inputInternal
	}
	dst = append(binary.LittleEndian.AppendUint64(dst, r.Epoch), fl)
	if r.Internal {
		dst = binary.LittleEndian.AppendUint16(dst, r.Colour)
	}
	return append(dst, r.Frame...)
}

// ColourDiff is c - i in 12-bit serial arithmetic, in [-2048, 2047]: a
// group member's data plane compares a frame's colour c (its sender's
// round) with its own round i this way, and a backup its input log with
// the round it resumes from. > 0: c is a later round; < 0: an earlier one.
func ColourDiff(c, i uint32) int32 {
	d := int32((c - i) & MaxColour)
	if d >= 2048 {
		d -= 4096
	}
	return d
}

// ParseInput decodes an INPUT payload; Frame aliases p.
func ParseInput(p []byte) (InputRecord, error) {
	if len(p) < inputFixedLen || len(p) > MaxInputPayload {
		return InputRecord{}, fmt.Errorf("input record: %d bytes: %w", len(p), ErrFrame)
	}
	r := InputRecord{Epoch: binary.LittleEndian.Uint64(p), Broken: p[8]&inputBroken != 0, Internal: p[8]&inputInternal != 0, Frame: p[inputFixedLen:]}
	if p[8]&^(inputBroken|inputInternal) != 0 || (r.Internal && r.Broken) {
		return r, fmt.Errorf("input record flags %#x: %w", p[8], ErrFrame)
	}
	if r.Internal {
		if len(r.Frame) < 2 {
			return r, fmt.Errorf("internal input record without its colour: %w", ErrFrame)
		}
		r.Colour, r.Frame = binary.LittleEndian.Uint16(r.Frame), r.Frame[2:]
		if r.Colour > MaxColour {
			return r, fmt.Errorf("input colour %d: %w", r.Colour, ErrFrame)
		}
	}
	if n := len(r.Frame); (n == 0 && !r.Broken) || (n > 0 && n < minInputFrame) {
		return r, fmt.Errorf("input frame of %d bytes: %w", n, ErrFrame)
	}
	return r, nil
}
