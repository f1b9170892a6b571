// SPDX-License-Identifier: Apache-2.0

package fgbi

import (
	"encoding/binary"
	"fmt"
	"math/bits"
)

// The delta encoding (XBZRLE-like) of cur against old, both n bytes: a
// sequence of (uvarint equal run, uvarint literal run, literal bytes of cur)
// that covers exactly n bytes. A pair with an empty literal run is only
// allowed at the end. Literal runs swallow equal gaps shorter than 3 bytes,
// which cost more as two headers than as literals.

// AppendDelta appends the delta encoding of cur against old (same length) to
// dst. It gives up and returns ok=false once the encoding would exceed limit
// bytes, so the caller's CPU cost is bounded by the literal it replaces.
// Both scans go 8 bytes at a time: equal runs end at the first nonzero
// byte of the XOR of two words, literal runs at the first 3 equal bytes,
// found in a word's equal-byte mask.
func AppendDelta(dst, old, cur []byte, limit int) (out []byte, ok bool) {
	n := len(cur)
	old = old[:n]
	start := len(dst)
	i := 0
	for i < n {
		j := equalRun(old, cur, i)
		k := literalEnd(old, cur, j)
		if len(dst)-start+20+(k-j) > limit {
			return dst[:start], false
		}
		dst = binary.AppendUvarint(dst, uint64(j-i))
		dst = binary.AppendUvarint(dst, uint64(k-j))
		dst = append(dst, cur[j:k]...)
		i = k
	}
	return dst, true
}

// equalRun returns the first position from j on where old and cur differ,
// or len(cur).
func equalRun(old, cur []byte, j int) int {
	n := len(cur)
	for j+8 <= n {
		if x := binary.LittleEndian.Uint64(old[j:]) ^ binary.LittleEndian.Uint64(cur[j:]); x != 0 {
			return j + bits.TrailingZeros64(x)/8
		}
		j += 8
	}
	for j < n && old[j] == cur[j] {
		j++
	}
	return j
}

// literalEnd returns where the literal run starting at k ends: the first
// position from k on that starts 3 equal bytes, or whose equal bytes reach
// the end; len(cur) if none.
func literalEnd(old, cur []byte, k int) int {
	n := len(cur)
	for k+8 <= n {
		x := binary.LittleEndian.Uint64(old[k:]) ^ binary.LittleEndian.Uint64(cur[k:])
		// High bit of each byte set where the byte of x is zero (exact,
		// no borrow across bytes).
		z := ^(((x & 0x7f7f7f7f7f7f7f7f) + 0x7f7f7f7f7f7f7f7f) | x) & 0x8080808080808080
		// Starts of 3 equal bytes at byte positions 0..5 of the word.
		if t := z & (z >> 8) & (z >> 16); t != 0 {
			return k + bits.TrailingZeros64(t)/8
		}
		// Positions 6 and 7 may start a run crossing into the next word;
		// a run starting at or before n-3 that reaches n is found as 3
		// equal bytes, so the end case only matters in the tail below.
		k += 6
	}
	for k < n {
		if old[k] != cur[k] {
			k++
			continue
		}
		m := k
		for m < n && m < k+3 && old[m] == cur[m] {
			m++
		}
		if m-k >= 3 || m == n {
			return k
		}
		k = m
	}
	return n
}

// ApplyDelta writes into out (len(out) bytes) old patched by the delta at the
// start of enc, and returns how many bytes of enc it consumed. out and old
// may be the same slice. It never reads or writes out of bounds.
func ApplyDelta(out, old, enc []byte) (int, error) {
	n := len(out)
	if len(old) != n {
		return 0, fmt.Errorf("delta base %d bytes, want %d: %w", len(old), n, ErrCorrupt)
	}
	if n == 0 {
		return 0, nil
	}
	if &out[0] != &old[0] {
		copy(out, old)
	}
	pos, r := 0, 0
	for pos < n {
		eq, a := binary.Uvarint(enc[r:])
		if a <= 0 {
			return 0, fmt.Errorf("delta run header: %w", ErrCorrupt)
		}
		r += a
		lit, b := binary.Uvarint(enc[r:])
		if b <= 0 {
			return 0, fmt.Errorf("delta run header: %w", ErrCorrupt)
		}
		r += b
		if eq > uint64(n-pos) || lit > uint64(n-pos)-eq {
			return 0, fmt.Errorf("delta run past %d bytes: %w", n, ErrCorrupt)
		}
		pos += int(eq)
		if lit == 0 && pos != n {
			return 0, fmt.Errorf("empty delta literal before the end: %w", ErrCorrupt)
		}
		if uint64(len(enc)-r) < lit {
			return 0, fmt.Errorf("delta literal past its record: %w", ErrCorrupt)
		}
		copy(out[pos:], enc[r:r+int(lit)])
		r += int(lit)
		pos += int(lit)
	}
	return r, nil
}
