// SPDX-License-Identifier: Apache-2.0

package trace

import (
	"slices"
	"testing"

	"github.com/resilire/resilire/testenv"
)

// TestFixtures reads every committed fixture whole (all checksums) and checks
// the recorder's invariants on real data: each slot's pages are all in the
// epoch it appeared in, and the workload dirtied pages after epoch 0.
func TestFixtures(t *testing.T) {
	for _, name := range testenv.TraceFixtures {
		t.Run(name, func(t *testing.T) {
			dir, err := testenv.TraceFixtureDir(name)
			if err != nil {
				t.Fatal(err)
			}
			meta, eps, err := readAll(dir)
			if err != nil {
				t.Fatal(err)
			}
			if meta.Name != name || meta.Epochs < 8 || len(eps) != meta.Epochs || meta.IntervalMS != 50 {
				t.Fatalf("meta %s: %d epochs (read %d), interval %d", meta.Name, meta.Epochs, len(eps), meta.IntervalMS)
			}
			for _, m := range meta.Mappings {
				for p := m.FirstPFN; p < m.FirstPFN+(m.End-m.Start)/PageSize; p++ {
					if _, ok := slices.BinarySearch(eps[m.FirstEpoch].PFNs, p); !ok {
						t.Fatalf("pfn %d of %s missing from epoch %d", p, m.Path, m.FirstEpoch)
					}
				}
			}
			dirty := 0
			for _, e := range eps[1:] {
				dirty += len(e.PFNs)
			}
			if dirty == 0 {
				t.Fatal("no page changed after epoch 0")
			}
		})
	}
}
