// SPDX-License-Identifier: Apache-2.0

package wire

import "testing"

func TestColourDiff(t *testing.T) {
	for _, tc := range []struct {
		c, i uint32
		want int32
	}{{5, 4, 1}, {5, 5, 0}, {5, 6, -1}, {0, 4095, 1}, {4095, 0, -1}, {4096, 4095, 1}, {2047, 0, 2047}, {2048, 0, -2048}} {
		if got := ColourDiff(tc.c, tc.i); got != tc.want {
			t.Errorf("ColourDiff(%d, %d) = %d, want %d", tc.c, tc.i, got, tc.want)
		}
	}
}
