// SPDX-License-Identifier: Apache-2.0

package group

import (
	"strings"
	"testing"
)

// FuzzParseLine: any line from the network is refused or parsed into a
// message that prints back as the same line; nothing panics.
func FuzzParseLine(f *testing.F) {
	for _, s := range []string{"ROUND 1", "DONE 7 1764200000000000000 42", "COMMIT 3", "ABORT 4", "ABORTED 4", "ACTIVATE 5 9", "ACTIVE 5", "ACTIVATE 5 0", "DONE 7 1 01", "COMMITTED 3", "FAIL 2 not ready: timeout", "STATE 1", "AT 1 8 8 0", "AT 7 8 8 41", "HALT 3", "HALTED 3", "CHECK 4 9", "READY 4", "FAIL 5 no backup: blocked", "TERM 1764200000000000000", "FAIL 9 superseded: term 9, this agent follows term 12",
		"ROUND 0", "ROUND 01", "DONE 1 x", "FAIL 1 ", "HELLO 1", "ROUND 18446744073709551616", strings.Repeat("A", 300)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		m, err := parseLine(s)
		if err != nil {
			return
		}
		if m.round == 0 || m.String() != s {
			t.Fatalf("%q parsed as %+v, prints %q", s, m, m.String())
		}
	})
}

func TestParseLine(t *testing.T) {
	for _, bad := range []string{"", "ROUND", "ROUND 0", "ROUND 01", "ROUND 1 x", "DONE 1", "DONE 1 x", "DONE 1 5", "DONE 1 5 0", "DONE 1 5 x", "FAIL 1", "ABORT 1 x", "ACTIVATE 1", "ACTIVATE 1 0", "ACTIVATE 1 07", "ACTIVE 2 3", "NOPE 1", "round 1", "STATE 1 2", "AT 1", "AT 1 2 3", "AT 1 2 3 4 5", "AT 1 02 3 4", "AT 1 x 3 4", "AT 1 2 3 -4", "HALT 1 2", "HALTED 1 x", "CHECK 1", "CHECK 1 0", "READY 1 2", "TERM 0", "TERM 5 6",
		strings.Repeat("R", MaxLine+1)} {
		if _, err := parseLine(bad); err == nil {
			t.Errorf("parseLine(%q) accepted", bad)
		}
	}
	if m, err := parseLine("FAIL 9 backup lost: eof"); err != nil || m.verb != "FAIL" || m.round != 9 || m.arg != "backup lost: eof" {
		t.Fatalf("FAIL line: %+v, %v", m, err)
	}
}
