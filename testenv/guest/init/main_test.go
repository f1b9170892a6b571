// SPDX-License-Identifier: Apache-2.0

package main

import "testing"

func TestGuestIP(t *testing.T) {
	n, err := guestIP("console=ttyS0 quiet guest.ip=10.77.0.10/24 panic=-1")
	if err != nil || n.String() != "10.77.0.10/24" {
		t.Fatalf("guestIP = %v, %v", n, err)
	}
	for _, bad := range []string{"console=ttyS0", "guest.ip=10.0.0.1", "guest.ip=fe80::1/64", "guest.ip=x/24"} {
		if _, err := guestIP(bad); err == nil {
			t.Errorf("guestIP(%q) accepted", bad)
		}
	}
}
