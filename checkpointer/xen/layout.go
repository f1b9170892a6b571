// SPDX-License-Identifier: Apache-2.0

package xen

import (
	"fmt"
	"sort"
)

// Extent is a run of populated guest frames [Start, Start+Count).
type Extent struct {
	Start uint64
	Count uint64
}

// Layout is the guest's memory map: its populated frames, in ascending
// extents. The driver exposes guest memory densely: page number i of the
// Domain interface is the i-th populated frame. An HVM guest's physical
// address space has large holes (the MMIO hole below 4 GiB, special pages
// near 0xfeff0000), so the dense numbering keeps the replica and the codec's
// tables the size of the guest's RAM rather than of its address space.
type Layout struct {
	extents []Extent
	base    []uint64 // base[i] = dense index of extents[i].Start
	pages   uint64
}

// NewLayout builds a layout from extents, which must be ascending,
// non-empty, non-overlapping and not adjacent (adjacent runs are merged).
func NewLayout(extents []Extent) (*Layout, error) {
	l := &Layout{}
	for i, e := range extents {
		if e.Count == 0 {
			return nil, fmt.Errorf("extent %d is empty", i)
		}
		if e.Start+e.Count < e.Start {
			return nil, fmt.Errorf("extent %d overflows", i)
		}
		if n := len(l.extents); n > 0 {
			last := &l.extents[n-1]
			end := last.Start + last.Count
			if e.Start < end {
				return nil, fmt.Errorf("extent %d at %#x overlaps or is out of order", i, e.Start)
			}
			if e.Start == end {
				last.Count += e.Count
				l.pages += e.Count
				continue
			}
		}
		l.extents = append(l.extents, e)
		l.base = append(l.base, l.pages)
		l.pages += e.Count
	}
	return l, nil
}

// Pages is the number of populated frames.
func (l *Layout) Pages() uint64 { return l.pages }

// Extents returns the populated runs (not to be modified).
func (l *Layout) Extents() []Extent { return l.extents }

// Index maps a guest frame number to its dense page number.
func (l *Layout) Index(gpfn uint64) (uint64, bool) {
	i := sort.Search(len(l.extents), func(i int) bool {
		return l.extents[i].Start+l.extents[i].Count > gpfn
	})
	if i == len(l.extents) || gpfn < l.extents[i].Start {
		return 0, false
	}
	return l.base[i] + gpfn - l.extents[i].Start, true
}

// GPFN maps a dense page number to its guest frame number.
func (l *Layout) GPFN(index uint64) (uint64, bool) {
	if index >= l.pages {
		return 0, false
	}
	i := sort.Search(len(l.base), func(i int) bool { return l.base[i] > index }) - 1
	return l.extents[i].Start + index - l.base[i], true
}

// extentBuilder collects populated frames in ascending order into extents.
type extentBuilder struct{ out []Extent }

func (b *extentBuilder) add(gpfn uint64) {
	if n := len(b.out); n > 0 && b.out[n-1].Start+b.out[n-1].Count == gpfn {
		b.out[n-1].Count++
		return
	}
	b.out = append(b.out, Extent{Start: gpfn, Count: 1})
}
