// SPDX-License-Identifier: Apache-2.0

package fgbi

import (
	"bytes"
	"encoding/binary"
	"math/rand/v2"
	"testing"
)

// TestDeltaRoundTrip checks AppendDelta/ApplyDelta on random pairs with
// sparse, dense and random differences, and the limit.
func TestDeltaRoundTrip(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 1))
	for i := 0; i < 2000; i++ {
		n := rng.IntN(300)
		old := make([]byte, n)
		for k := range old {
			old[k] = byte(rng.IntN(4))
		}
		cur := bytes.Clone(old)
		switch i % 3 {
		case 0: // sparse
			for k := 0; k < n/20; k++ {
				cur[rng.IntN(n)] ^= byte(1 + rng.IntN(255))
			}
		case 1: // dense: most bytes differ
			for k := range cur {
				if rng.IntN(10) > 0 {
					cur[k] ^= byte(1 + rng.IntN(255))
				}
			}
		default: // random
			for k := range cur {
				cur[k] = byte(rng.Uint32())
			}
		}
		enc, ok := AppendDelta(nil, old, cur, 1<<20)
		if !ok {
			t.Fatal("unbounded delta failed")
		}
		out := make([]byte, n)
		used, err := ApplyDelta(out, old, enc)
		if err != nil || used != len(enc) || !bytes.Equal(out, cur) {
			t.Fatalf("case %d: err %v, used %d of %d, equal %v", i, err, used, len(enc), bytes.Equal(out, cur))
		}
		if lim := len(enc) - 1; lim >= 0 {
			if short, ok := AppendDelta(nil, old, cur, lim); ok || len(short) != 0 {
				t.Fatalf("case %d: limit %d not enforced (%d bytes, ok %v)", i, lim, len(short), ok)
			}
		}
	}
}

// appendDeltaRef is the byte-at-a-time definition of the delta encoding
// that AppendDelta implements word by word.
func appendDeltaRef(dst, old, cur []byte) []byte {
	n, i := len(cur), 0
	for i < n {
		j := i
		for j < n && old[j] == cur[j] {
			j++
		}
		k := j
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
				break
			}
			k = m
		}
		dst = binary.AppendUvarint(dst, uint64(j-i))
		dst = binary.AppendUvarint(dst, uint64(k-j))
		dst = append(dst, cur[j:k]...)
		i = k
	}
	return dst
}

// TestDeltaMatchesReference checks that the word-at-a-time AppendDelta
// produces exactly the reference encoding, on inputs with short equal and
// unequal runs at every alignment.
func TestDeltaMatchesReference(t *testing.T) {
	rng := rand.New(rand.NewPCG(2, 3))
	for i := 0; i < 20000; i++ {
		n := rng.IntN(140)
		old := make([]byte, n)
		cur := make([]byte, n)
		p := rng.IntN(9) + 1 // 1 in p bytes differ
		for k := range old {
			old[k] = byte(rng.IntN(256))
			cur[k] = old[k]
			if rng.IntN(p) == 0 {
				cur[k] ^= byte(1 + rng.IntN(255))
			}
		}
		want := appendDeltaRef(nil, old, cur)
		got, ok := AppendDelta(nil, old, cur, 1<<20)
		if !ok || !bytes.Equal(got, want) {
			t.Fatalf("case %d (n %d): got %x, want %x", i, n, got, want)
		}
	}
}
