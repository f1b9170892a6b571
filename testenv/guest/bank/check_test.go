// SPDX-License-Identifier: Apache-2.0

package bank

import (
	"strings"
	"testing"
)

func TestCheck(t *testing.T) {
	good := func() (LoadResult, Audit) {
		return LoadResult{Acked: []uint64{1, 2, 3}, Unresolved: []uint64{4, 5}},
			Audit{Transfers: map[uint64]bool{1: true, 2: true, 3: true, 4: true}, Sum: Accounts * InitialBalance, Accounts: Accounts, Integrity: "ok"}
	}
	r, a := good()
	if v := Check(r, a); len(v) != 0 {
		t.Fatalf("matching load and audit: %q", v)
	}
	for _, tc := range []struct {
		name   string
		change func(*LoadResult, *Audit)
		want   string
	}{
		{"lost ack", func(_ *LoadResult, a *Audit) { delete(a.Transfers, 2) }, "lost 1 acknowledged transfers (e.g. 0x2)"},
		{"sum", func(_ *LoadResult, a *Audit) { a.Sum -= 10 }, "balance sum 63990, want 64000"},
		{"accounts", func(_ *LoadResult, a *Audit) { a.Accounts-- }, "63 accounts, want 64"},
		{"integrity", func(_ *LoadResult, a *Audit) { a.Integrity = "row 3 missing from index" }, "integrity check"},
		{"unknown id", func(_ *LoadResult, a *Audit) { a.Transfers[99] = true }, "never sent"},
		{"refused but committed", func(r *LoadResult, _ *Audit) { r.Unresolved = []uint64{5}; r.Refused = 1 }, "never sent"},
	} {
		r, a := good()
		tc.change(&r, &a)
		v := Check(r, a)
		if len(v) != 1 || !strings.Contains(v[0], tc.want) {
			t.Errorf("%s: violations %q, want one with %q", tc.name, v, tc.want)
		}
	}
}
