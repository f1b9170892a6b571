// SPDX-License-Identifier: Apache-2.0

package fgbi

import (
	"math/rand/v2"
	"testing"
)

// TestAddRunZero checks that a run is merged only with a run from the same
// kind of source: a zero run's end (zeroSrc+n) wraps around to small
// offsets, which must not extend it over a literal run.
func TestAddRunZero(t *testing.T) {
	var st staged
	st.addRun(0, zeroSrc, 64)
	st.addRun(64, 63, 5) // zeroSrc+64 == 63 after wrap-around
	st.addRun(69, 68, 3) // continues the literal run
	st.addRun(72, zeroSrc, 8)
	st.addRun(80, zeroSrc, 8) // continues the zero run
	want := []run{{0, zeroSrc, 64}, {64, 63, 8}, {72, zeroSrc, 16}}
	if len(st.runs) != len(want) {
		t.Fatalf("runs %v, want %v", st.runs, want)
	}
	for i := range want {
		if st.runs[i] != want[i] {
			t.Fatalf("runs %v, want %v", st.runs, want)
		}
	}
}

// TestCRCCombine checks crcCombine against checksumming the concatenation.
func TestCRCCombine(t *testing.T) {
	rng := rand.New(rand.NewPCG(4, 5))
	for i := 0; i < 300; i++ {
		a, b := make([]byte, rng.IntN(3000)), make([]byte, rng.IntN(70000))
		for k := range a {
			a[k] = byte(rng.Uint32())
		}
		for k := range b {
			b[k] = byte(rng.Uint32())
		}
		want := crc32c(append(append([]byte(nil), a...), b...))
		if got := crcCombine(crc32c(a), crc32c(b), len(b)); got != want {
			t.Fatalf("case %d (%d+%d bytes): %08x, want %08x", i, len(a), len(b), got, want)
		}
	}
}
