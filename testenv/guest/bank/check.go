// SPDX-License-Identifier: Apache-2.0

package bank

import (
	"fmt"
	"slices"
)

// Check returns every violation of the workload's invariants by the audited
// database a, given the load r that ran against it (empty: safe). It
// assumes r is the only load the database has seen: a committed id that r
// never sent is a violation (a refused transfer that committed anyway, or
// one made up).
func Check(r LoadResult, a Audit) []string {
	var v []string
	var lost []uint64
	for _, id := range r.Acked {
		if !a.Transfers[id] {
			lost = append(lost, id)
		}
	}
	if len(lost) > 0 {
		v = append(v, fmt.Sprintf("lost %d acknowledged transfers (e.g. %#x)", len(lost), lost[0]))
	}
	if want := int64(Accounts * InitialBalance); a.Sum != want {
		v = append(v, fmt.Sprintf("balance sum %d, want %d", a.Sum, want))
	}
	if a.Accounts != Accounts {
		v = append(v, fmt.Sprintf("%d accounts, want %d", a.Accounts, Accounts))
	}
	if a.Integrity != "ok" {
		v = append(v, fmt.Sprintf("integrity check: %q", a.Integrity))
	}
	sent := make(map[uint64]bool, len(r.Acked)+len(r.Unresolved))
	for _, id := range r.Acked {
		sent[id] = true
	}
	for _, id := range r.Unresolved {
		sent[id] = true
	}
	var unknown []uint64
	for id := range a.Transfers {
		if !sent[id] {
			unknown = append(unknown, id)
		}
	}
	if len(unknown) > 0 {
		v = append(v, fmt.Sprintf("%d committed transfers the load never sent or saw refused (e.g. %#x)", len(unknown), slices.Min(unknown)))
	}
	return v
}
