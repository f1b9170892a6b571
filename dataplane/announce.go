// SPDX-License-Identifier: Apache-2.0

package dataplane

import (
	"fmt"
	"net"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
)

// FrameSender puts one Ethernet frame on the wire (a packet.Socket).
type FrameSender interface {
	SendFrame(frame []byte) error
}

// Announcer tells the network that the guest's IPv4 address now lives
// behind this host: gratuitous ARP requests (sender = target = guest IP)
// from the guest's MAC, so switches and neighbours relearn it at once.
type Announcer struct {
	MAC    net.HardwareAddr
	IP     net.IP
	Sender FrameSender
	// Count is the number of announcements (default 3), Gap the pause
	// between them (default 100 ms).
	Count int
	Gap   time.Duration
}

// GratuitousARP builds the broadcast ARP request announcing ip at mac.
func GratuitousARP(mac net.HardwareAddr, ip net.IP) ([]byte, error) {
	ip4 := ip.To4()
	if len(mac) != 6 || ip4 == nil {
		return nil, fmt.Errorf("gratuitous arp needs a 6-byte mac and an ipv4 address, got %v %v", mac, ip)
	}
	eth := &layers.Ethernet{SrcMAC: mac, DstMAC: layers.EthernetBroadcast, EthernetType: layers.EthernetTypeARP}
	arp := &layers.ARP{
		AddrType: layers.LinkTypeEthernet, Protocol: layers.EthernetTypeIPv4,
		HwAddressSize: 6, ProtAddressSize: 4, Operation: layers.ARPRequest,
		SourceHwAddress: mac, SourceProtAddress: ip4,
		DstHwAddress: make([]byte, 6), DstProtAddress: ip4,
	}
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true}, eth, arp); err != nil {
		return nil, fmt.Errorf("serialize gratuitous arp: %w", err)
	}
	return buf.Bytes(), nil
}

// Announce sends the announcements.
func (a *Announcer) Announce() error {
	frame, err := GratuitousARP(a.MAC, a.IP)
	if err != nil {
		return err
	}
	count, gap := a.Count, a.Gap
	if count <= 0 {
		count = 3
	}
	if gap <= 0 {
		gap = 100 * time.Millisecond
	}
	for i := 0; i < count; i++ {
		if i > 0 {
			time.Sleep(gap)
		}
		if err := a.Sender.SendFrame(frame); err != nil {
			return fmt.Errorf("gratuitous arp %d/%d: %w", i+1, count, err)
		}
	}
	return nil
}
