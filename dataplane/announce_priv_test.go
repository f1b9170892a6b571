// SPDX-License-Identifier: Apache-2.0

package dataplane

import (
	"net"
	"testing"
	"time"

	"github.com/resilire/resilire/dataplane/packet"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"

	"github.com/resilire/resilire/testenv"
)

// The real packet socket: gratuitous ARP sent from the guest's side of the
// rig crosses the bridge and reaches the client as a broadcast ARP request
// announcing the guest's address.
func TestAnnouncerOnTheWire(t *testing.T) {
	testenv.RequirePrivileged(t)
	rig := testenv.NewBridgeRig(t, "rena")
	var snd *packet.Socket
	if err := rig.Guest.Do(func() (err error) { snd, err = packet.Open(rig.GuestIf, false); return err }); err != nil {
		t.Fatal(err)
	}
	defer snd.Close()
	sniff, err := testenv.OpenPacketSock(rig.Client, rig.ClientIf)
	if err != nil {
		t.Fatal(err)
	}
	defer sniff.Close()
	a := &Announcer{MAC: rig.GuestMAC, IP: rig.GuestIP, Sender: snd, Count: 2, Gap: 10 * time.Millisecond}
	if err := a.Announce(); err != nil {
		t.Fatal(err)
	}
	frames, err := sniff.Collect(time.Second, 0)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, f := range frames {
		pkt := gopacket.NewPacket(f, layers.LayerTypeEthernet, gopacket.Default)
		arp, ok := pkt.Layer(layers.LayerTypeARP).(*layers.ARP)
		if ok && arp.Operation == layers.ARPRequest && net.IP(arp.SourceProtAddress).Equal(rig.GuestIP) &&
			net.IP(arp.DstProtAddress).Equal(rig.GuestIP) && net.HardwareAddr(arp.SourceHwAddress).String() == rig.GuestMAC.String() {
			n++
		}
	}
	if n != 2 {
		t.Fatalf("client saw %d gratuitous ARPs for %v among %d frames, want 2", n, rig.GuestIP, len(frames))
	}
}
