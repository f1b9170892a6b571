// SPDX-License-Identifier: Apache-2.0

package dataplane

import (
	"net"
	"testing"
)

func TestGratuitousARPRejectsBadInput(t *testing.T) {
	if _, err := GratuitousARP(net.HardwareAddr{1, 2}, net.ParseIP("10.0.0.1")); err == nil {
		t.Fatal("short mac accepted")
	}
	if _, err := GratuitousARP(net.HardwareAddr{1, 2, 3, 4, 5, 6}, net.ParseIP("fe80::1")); err == nil {
		t.Fatal("ipv6 accepted")
	}
}
