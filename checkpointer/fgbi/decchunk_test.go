// SPDX-License-Identifier: Apache-2.0

package fgbi

import "testing"

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
