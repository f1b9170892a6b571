// SPDX-License-Identifier: Apache-2.0

package trace

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
)

// vma is one line of /proc/PID/maps.
type vma struct {
	start, end uint64
	perms      string
	path       string
}

// writableMappings parses /proc/PID/maps and returns the writable mappings,
// private and shared, in ascending address order.
func writableMappings(pid int) ([]vma, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/maps", pid))
	if err != nil {
		return nil, fmt.Errorf("read maps: %w", err)
	}
	return parseMaps(b)
}

func parseMaps(b []byte) ([]vma, error) {
	var out []vma
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		// start-end perms offset dev inode [path]
		f := strings.Fields(sc.Text())
		if len(f) < 5 {
			return nil, fmt.Errorf("maps line %q: too few fields", sc.Text())
		}
		lo, hi, ok := strings.Cut(f[0], "-")
		start, err1 := strconv.ParseUint(lo, 16, 64)
		end, err2 := strconv.ParseUint(hi, 16, 64)
		if !ok || err1 != nil || err2 != nil || end <= start || start%PageSize != 0 || end%PageSize != 0 {
			return nil, fmt.Errorf("maps line %q: bad range", sc.Text())
		}
		perms := f[1]
		if len(perms) < 2 || perms[1] != 'w' {
			continue
		}
		path := ""
		if len(f) > 5 {
			path = strings.Join(f[5:], " ")
		}
		out = append(out, vma{start: start, end: end, perms: perms, path: path})
	}
	return out, sc.Err()
}

// space is the recorder's flat page space: slots of address ranges, each
// with its first PFN. Slots never overlap in address and never move; a range
// not seen before is appended at the end of the PFN space.
type space struct {
	slots    []Mapping // sorted by Start
	pages    uint64
	maxPages uint64
}

// run is a range of the process to read: npages pages from addr into pfn.
type run struct {
	addr, pfn, npages uint64
	fresh             bool // the slot was created at this epoch
}

// place maps the current writable mappings onto the space, appending slots
// for uncovered ranges (created at epoch seq), and returns the runs to read.
func (s *space) place(vmas []vma, seq int) ([]run, error) {
	var runs []run
	var added []Mapping
	for _, v := range vmas {
		pos := v.start
		i, _ := slices.BinarySearchFunc(s.slots, v.start, func(m Mapping, a uint64) int {
			if m.End <= a {
				return -1
			}
			return 1
		})
		for ; pos < v.end; i++ {
			next := v.end
			if i < len(s.slots) && s.slots[i].Start < v.end {
				next = max(s.slots[i].Start, pos)
			}
			if next > pos { // a gap no slot covers: a new slot
				n := (next - pos) / PageSize
				if s.pages+n > s.maxPages {
					return nil, fmt.Errorf("page space would exceed %d pages at mapping %x-%x %s", s.maxPages, v.start, v.end, v.path)
				}
				m := Mapping{Start: pos, End: next, FirstPFN: s.pages, Perms: v.perms, Path: v.path, FirstEpoch: seq}
				added = append(added, m)
				runs = append(runs, run{addr: pos, pfn: s.pages, npages: n, fresh: true})
				s.pages += n
				pos = next
			}
			if i >= len(s.slots) || pos >= v.end {
				break
			}
			m := s.slots[i]
			hi := min(v.end, m.End)
			runs = append(runs, run{addr: pos, pfn: m.FirstPFN + (pos-m.Start)/PageSize, npages: (hi - pos) / PageSize})
			pos = hi
		}
	}
	s.slots = append(s.slots, added...)
	slices.SortFunc(s.slots, func(a, b Mapping) int { return cmpU64(a.Start, b.Start) })
	return runs, nil
}

func cmpU64(a, b uint64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// mappings returns the slots in PFN order, the meta's mapping table.
func (s *space) mappings() []Mapping {
	out := slices.Clone(s.slots)
	slices.SortFunc(out, func(a, b Mapping) int { return cmpU64(a.FirstPFN, b.FirstPFN) })
	return out
}
