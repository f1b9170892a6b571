// SPDX-License-Identifier: Apache-2.0

package sim

import "slices"

// slicesSortUnique sorts *s ascending and removes duplicates in place.
func slicesSortUnique(s *[]uint64) {
	slices.Sort(*s)
	*s = slices.Compact(*s)
}

// allPages appends every page number below n.
func allPages(dst []uint64, n uint64) []uint64 {
	for p := uint64(0); p < n; p++ {
		dst = append(dst, p)
	}
	return dst
}
