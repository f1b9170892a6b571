// SPDX-License-Identifier: Apache-2.0

package wire

import (
	"encoding/binary"
	"fmt"
)

// INPUT payload: epoch u64 | flags u8 | frame (empty for a pure marker).
const (
	inputFixedLen = 9
	// MaxInputFrame bounds one logged frame (a GSO super-packet).
	MaxInputFrame = 65536
	// MaxInputPayload bounds an INPUT frame.
	MaxInputPayload = inputFixedLen + MaxInputFrame
	minInputFrame   = 14 // an Ethernet header
	inputBroken     = 1  // flag: the log of this epoch lost frames before this one
)

// InputRecord is one frame sent to the guest, with the epoch it arrived in.
type InputRecord struct {
	Epoch uint64
	// Broken marks the epoch's log incomplete (frames were lost before
	// this one); Frame may then be empty.
	Broken bool
	Frame  []byte
}

// Marshal appends the INPUT payload of r to dst.
func (r InputRecord) Marshal(dst []byte) []byte {
	var fl byte
	if r.Broken {
		fl = inputBroken
	}
	dst = append(binary.LittleEndian.AppendUint64(dst, r.Epoch), fl)
	return append(dst, r.Frame...)
}

// ParseInput decodes an INPUT payload; Frame aliases p.
func ParseInput(p []byte) (InputRecord, error) {
	if len(p) < inputFixedLen || len(p) > MaxInputPayload {
		return InputRecord{}, fmt.Errorf("input record: %d bytes: %w", len(p), ErrFrame)
	}
	r := InputRecord{Epoch: binary.LittleEndian.Uint64(p), Broken: p[8]&inputBroken != 0, Frame: p[inputFixedLen:]}
	if p[8]&^inputBroken != 0 {
		return r, fmt.Errorf("input record flags %#x: %w", p[8], ErrFrame)
	}
	if n := len(r.Frame); (n == 0 && !r.Broken) || (n > 0 && n < minInputFrame) {
		return r, fmt.Errorf("input frame of %d bytes: %w", n, ErrFrame)
	}
	return r, nil
}
