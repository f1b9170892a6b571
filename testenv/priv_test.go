// SPDX-License-Identifier: Apache-2.0

package testenv

import "testing"

func TestParseVersion(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want [2]int
		ok   bool
	}{
		{"6.18.44-fc-v595", [2]int{6, 18}, true},
		{"4.19.0", [2]int{4, 19}, true},
		{"6.1", [2]int{6, 1}, true},
		{"6", [2]int{}, false},
		{"x.y", [2]int{}, false},
	} {
		got, err := parseVersion(tc.in)
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("parseVersion(%q) = %v, %v; want %v ok=%v", tc.in, got, err, tc.want, tc.ok)
		}
	}
}
