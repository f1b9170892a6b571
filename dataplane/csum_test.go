// SPDX-License-Identifier: Apache-2.0

package dataplane

import (
	"bytes"
	"encoding/binary"
	"net"
	"testing"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
)

// l4Frame builds an Ethernet/IPv4 or IPv6/TCP or UDP frame with a correct
// checksum (gopacket computes it), padded with pad zero bytes, and returns
// the frame and the offset of the checksum field.
func l4Frame(t testing.TB, v6, udp bool, payload, pad int) ([]byte, int) {
	t.Helper()
	eth := &layers.Ethernet{SrcMAC: net.HardwareAddr{2, 0, 0, 0, 0, 1}, DstMAC: net.HardwareAddr{2, 0, 0, 0, 0, 2}}
	var net4 gopacket.NetworkLayer
	var l3 gopacket.SerializableLayer
	l3len := 20
	proto := layers.IPProtocolTCP
	if udp {
		proto = layers.IPProtocolUDP
	}
	if v6 {
		eth.EthernetType = layers.EthernetTypeIPv6
		ip := &layers.IPv6{Version: 6, HopLimit: 64, NextHeader: proto, SrcIP: net.ParseIP("fd00::1"), DstIP: net.ParseIP("fd00::2")}
		net4, l3, l3len = ip, ip, 40
	} else {
		eth.EthernetType = layers.EthernetTypeIPv4
		ip := &layers.IPv4{Version: 4, TTL: 64, Protocol: proto, SrcIP: net.IP{10, 0, 0, 1}, DstIP: net.IP{10, 0, 0, 2}}
		net4, l3 = ip, ip
	}
	var l4 interface {
		gopacket.SerializableLayer
		SetNetworkLayerForChecksum(gopacket.NetworkLayer) error
	}
	field := 14 + l3len + tcpCsumOff
	if udp {
		l4 = &layers.UDP{SrcPort: 4000, DstPort: 5000}
		field = 14 + l3len + udpCsumOff
	} else {
		l4 = &layers.TCP{SrcPort: 4000, DstPort: 5000, Seq: 7, Ack: 9, ACK: true, Window: 512}
	}
	if err := l4.SetNetworkLayerForChecksum(net4); err != nil {
		t.Fatal(err)
	}
	data := make([]byte, payload)
	for i := range data {
		data[i] = byte(i*31 + 7)
	}
	buf := gopacket.NewSerializeBuffer()
	opts := gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}
	if err := gopacket.SerializeLayers(buf, opts, eth, l3, l4, gopacket.Payload(data)); err != nil {
		t.Fatal(err)
	}
	return append(buf.Bytes(), make([]byte, pad)...), field
}

// pseudoSum is the folded pseudo-header sum the kernel leaves in the field
// of a CHECKSUM_PARTIAL frame, computed here from the frame on its own.
func pseudoSum(f []byte, v6, udp bool) uint16 {
	var s uint32
	add := func(b []byte) {
		for i := 0; i+1 < len(b); i += 2 {
			s += uint32(binary.BigEndian.Uint16(b[i:]))
		}
	}
	proto, l4len := uint32(6), 0
	if udp {
		proto = 17
	}
	if v6 {
		add(f[14+8 : 14+40])
		l4len = int(binary.BigEndian.Uint16(f[14+4:]))
	} else {
		add(f[14+12 : 14+20])
		l4len = int(binary.BigEndian.Uint16(f[14+2:])) - 20
	}
	s += proto + uint32(l4len)
	for s>>16 != 0 {
		s = s&0xffff + s>>16
	}
	return uint16(s)
}

func TestCompleteChecksumPartial(t *testing.T) {
	for _, n := range []int{0, 1, 1400} {
		want, field := l4Frame(t, false, false, n, 0)
		f := bytes.Clone(want)
		binary.BigEndian.PutUint16(f[field:], pseudoSum(f, false, false))
		CompleteChecksum(&FrameHdr{IpSummed: ChecksumPartial, CsumStart: 34, CsumOffset: tcpCsumOff}, f)
		if !bytes.Equal(f, want) {
			t.Fatalf("%d-byte payload: checksum %#x, want %#x", n, binary.BigEndian.Uint16(f[field:]), binary.BigEndian.Uint16(want[field:]))
		}
		binary.BigEndian.PutUint16(f[field:], pseudoSum(f, false, false))
		before := bytes.Clone(f)
		CompleteChecksum(&FrameHdr{IpSummed: ChecksumUnnecessary, CsumStart: 34, CsumOffset: tcpCsumOff}, f)
		if !bytes.Equal(before, f) {
			t.Fatalf("frame without CHECKSUM_PARTIAL or FrameMetaUnknown was completed")
		}
	}
}

// TestCompleteChecksumUnknown: records of the portable input log carry no
// ip_summed. A correct checksum stays, a PARTIAL one (the field holds the
// pseudo-header sum) is completed, a damaged one stays damaged.
func TestCompleteChecksumUnknown(t *testing.T) {
	unknown := &FrameHdr{Flags: FrameMetaUnknown}
	for _, v6 := range []bool{false, true} {
		for _, udp := range []bool{false, true} {
			for _, c := range []struct{ payload, pad int }{{0, 0}, {1, 0}, {3, 17}, {1000, 0}} {
				want, field := l4Frame(t, v6, udp, c.payload, c.pad)
				f := bytes.Clone(want)
				CompleteChecksum(unknown, f)
				if !bytes.Equal(f, want) {
					t.Fatalf("v6 %v udp %v %+v: a correct checksum was changed", v6, udp, c)
				}
				binary.BigEndian.PutUint16(f[field:], pseudoSum(f, v6, udp))
				CompleteChecksum(unknown, f)
				if !bytes.Equal(f, want) {
					t.Fatalf("v6 %v udp %v %+v: partial checksum completed to %#x, want %#x",
						v6, udp, c, binary.BigEndian.Uint16(f[field:]), binary.BigEndian.Uint16(want[field:]))
				}
				f[len(f)-c.pad-1] ^= 0x40 // damage in flight
				damaged := bytes.Clone(f)
				CompleteChecksum(unknown, f)
				if !bytes.Equal(f, damaged) {
					t.Fatalf("v6 %v udp %v %+v: a damaged frame was given a valid checksum", v6, udp, c)
				}
			}
		}
	}
}

// FuzzCompleteChecksum: any frame and header, no panic, no write outside
// the frame's checksum field, and completing twice changes nothing more.
func FuzzCompleteChecksum(f *testing.F) {
	for _, v6 := range []bool{false, true} {
		fr, _ := l4Frame(f, v6, !v6, 10, 4)
		f.Add(fr, uint8(0), FrameMetaUnknown, uint16(0), uint16(0))
		f.Add(fr, uint8(ChecksumPartial), uint8(0), uint16(34), uint16(16))
	}
	f.Fuzz(func(t *testing.T, frame []byte, ipSummed, flags uint8, start, off uint16) {
		h := &FrameHdr{IpSummed: ipSummed, Flags: flags, CsumStart: start, CsumOffset: off}
		once := bytes.Clone(frame)
		CompleteChecksum(h, once)
		diff := 0
		for i := range once {
			if once[i] != frame[i] {
				diff++
			}
		}
		if diff > 2 {
			t.Fatalf("%d bytes changed, want at most the 2-byte checksum field", diff)
		}
		if h.IpSummed != ChecksumPartial {
			twice := bytes.Clone(once)
			CompleteChecksum(h, twice)
			if !bytes.Equal(once, twice) {
				t.Fatalf("completing twice changed the frame again")
			}
		}
	})
}
