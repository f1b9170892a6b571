// SPDX-License-Identifier: Apache-2.0

package checkpointer

import "slices"

// slicesSortUnique sorts *s ascending and removes duplicates in place.
func slicesSortUnique(s *[]uint64) {
	slices.Sort(*s)
	*s = slices.Compact(*s)
}
