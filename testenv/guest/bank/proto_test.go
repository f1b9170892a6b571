// SPDX-License-Identifier: Apache-2.0

package bank

import (
	"strings"
	"testing"
)

func FuzzParse(f *testing.F) {
	for _, s := range []string{
		"T 1 0 1 100", "T 18446744073709551615 63 0 1", "A", "A ", " T  7 3 4 9 ",
		"T 1 1 1 1", "T 1 0 64 1", "T -1 0 1 1", "T 1 0 1 0", "T 1 0 1 -3", "T 1 0 1 +3",
		"T 1 0 1 9223372036854775808", "X", "", "T", "A 1", "T 1\t0 1 5\r",
		"END 64000 64 3 ok", "END 1 2 3 row 4 missing", "END x", "END 1 2 3",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, line string) {
		r, err := parseRequest(line)
		if err == nil {
			switch r.op {
			case 'A':
			case 'T':
				if r.src < 0 || r.src >= Accounts || r.dst < 0 || r.dst >= Accounts || r.src == r.dst || r.amount <= 0 {
					t.Fatalf("%q parsed to an impossible transfer %+v", line, r)
				}
			default:
				t.Fatalf("%q parsed to op %q", line, r.op)
			}
			// Formatting round-trips.
			if r2, err := parseRequest(r.String()); err != nil || r2 != r {
				t.Fatalf("%q -> %+v -> %q -> %+v, %v", line, r, r.String(), r2, err)
			}
		}
		if s, err := parseSummary(line); err == nil {
			if s2, err := parseSummary(s.String()); err != nil || s2 != s {
				t.Fatalf("summary %q -> %+v -> %+v, %v", line, s, s2, err)
			}
		}
		// Reply lines stay single, bounded lines.
		if l := oneLine(line, 100); len(l) > 100 || strings.ContainsAny(l, "\r\n") {
			t.Fatalf("oneLine(%q) = %q", line, l)
		}
	})
}
