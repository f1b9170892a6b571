// SPDX-License-Identifier: Apache-2.0

package fgbi

import (
	"encoding/binary"
	"fmt"

	"github.com/klauspost/compress/s2"
)

// Device-state record payload: one mode byte, then either the full state
// (stateFull) or uvarint length + delta against the previous state padded
// with zeros or cut to that length (stateDelta), then optionally S2 over all
// of it (mode bit stateS2; the S2 frame holds the rest of the payload).
const (
	stateFull  = 0
	stateDelta = 1
	stateS2    = 0x80
)

// encodeState returns the state record payload for cur given the state the
// backup holds (prev, nil if none).
func encodeState(prev, cur []byte, compress bool) []byte {
	body := make([]byte, 0, 64)
	mode := byte(stateFull)
	if prev != nil {
		base := stateBase(prev, len(cur))
		body = binary.AppendUvarint(body, uint64(len(cur)))
		var ok bool
		if body, ok = AppendDelta(body, base, cur, len(cur)); ok {
			mode = stateDelta
		}
	}
	if mode == stateFull {
		body = append(body[:0], cur...)
	}
	if compress {
		if z := s2.Encode(nil, body); len(z) < len(body)-len(body)/32 {
			return append([]byte{mode | stateS2}, z...)
		}
	}
	return append([]byte{mode}, body...)
}

// stateBase is prev cut or zero-padded to n bytes.
func stateBase(prev []byte, n int) []byte {
	b := make([]byte, n)
	copy(b, prev)
	return b
}

// decodeState is encodeState's inverse; base is the decoder's last applied
// state (nil if none).
func decodeState(p []byte, base []byte) ([]byte, error) {
	if len(p) == 0 {
		return nil, fmt.Errorf("empty state record: %w", ErrCorrupt)
	}
	mode, body := p[0], p[1:]
	if mode&stateS2 != 0 {
		n, err := s2.DecodedLen(body)
		if err != nil || n > MaxStateSize+binary.MaxVarintLen64 {
			return nil, fmt.Errorf("state s2 length: %w", ErrCorrupt)
		}
		if body, err = s2.Decode(make([]byte, n), body); err != nil {
			return nil, fmt.Errorf("state s2: %v: %w", err, ErrCorrupt)
		}
		mode &^= stateS2
	}
	switch mode {
	case stateFull:
		return append([]byte{}, body...), nil
	case stateDelta:
		if base == nil {
			return nil, fmt.Errorf("device state: %w", ErrNoBase)
		}
		n, k := binary.Uvarint(body)
		if k <= 0 || n > MaxStateSize {
			return nil, fmt.Errorf("state delta length: %w", ErrTooLarge)
		}
		out := stateBase(base, int(n))
		used, err := ApplyDelta(out, out, body[k:])
		if err != nil {
			return nil, fmt.Errorf("state delta: %w", err)
		}
		if k+used != len(body) {
			return nil, fmt.Errorf("state delta: %d trailing bytes: %w", len(body)-k-used, ErrCorrupt)
		}
		return out, nil
	}
	return nil, fmt.Errorf("state mode %#x: %w", p[0], ErrCorrupt)
}
