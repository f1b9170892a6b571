// SPDX-License-Identifier: Apache-2.0

package testenv

import (
	"bytes"
	"slices"
	"testing"
	"time"
)

// TestBridgeRig: without any program attached, a guest frame crosses the
// bridge to the client, the bridge learns the guest on Port, and nothing
// else arrives (IPv6 and multicast noise are off).
func TestBridgeRig(t *testing.T) {
	RequirePrivileged(t)
	r := NewBridgeRig(t, "rdp")
	guest, err := OpenPacketSock(r.Guest, r.GuestIf)
	if err != nil {
		t.Fatal(err)
	}
	defer guest.Close()
	client, err := OpenPacketSock(r.Client, r.ClientIf)
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	frame := make([]byte, 60)
	copy(frame, r.ClientMAC)
	copy(frame[6:], r.GuestMAC)
	frame[12], frame[13] = 0x88, 0xb5 // local experimental ethertype
	copy(frame[14:], "rdp rig test")
	if err := guest.Send(frame); err != nil {
		t.Fatal(err)
	}
	got, err := client.Collect(time.Second, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || !bytes.Equal(got[0], frame) {
		t.Fatalf("client received %d frames, want exactly the one sent", len(got))
	}
	ports, err := r.FDBPorts(r.GuestMAC)
	if err != nil || !slices.Equal(ports, []string{r.Port}) {
		t.Fatalf("guest MAC learned on %v (err %v), want %s", ports, err, r.Port)
	}
}
