// SPDX-License-Identifier: Apache-2.0

package netbuf

import (
	"errors"
	"net"
	"testing"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"github.com/resilire/resilire/dataplane"
)

var (
	macGuest  = net.HardwareAddr{0x02, 0, 0, 0, 0, 2}
	macClient = net.HardwareAddr{0x02, 0, 0, 0, 0, 3}
)

// buildFrame serializes layers into an Ethernet frame.
func buildFrame(tb testing.TB, ls ...gopacket.SerializableLayer) []byte {
	tb.Helper()
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true}, ls...); err != nil {
		tb.Fatal(err)
	}
	return buf.Bytes()
}

// ipLayers returns Ethernet and IP layers for proto, v6 or v4, optionally
// behind a VLAN tag.
func ipLayers(v6 bool, vlan bool, proto layers.IPProtocol) []gopacket.SerializableLayer {
	eth := &layers.Ethernet{SrcMAC: macGuest, DstMAC: macClient, EthernetType: layers.EthernetTypeIPv4}
	var ip gopacket.SerializableLayer
	if v6 {
		eth.EthernetType = layers.EthernetTypeIPv6
		l := &layers.IPv6{Version: 6, HopLimit: 64, NextHeader: proto,
			SrcIP: []byte{0xfd, 0, 15: 2}, DstIP: []byte{0xfd, 0, 15: 3}}
		ip = l
	} else {
		l := &layers.IPv4{Version: 4, IHL: 5, TTL: 64, Protocol: proto,
			SrcIP: []byte{10, 77, 0, 2}, DstIP: []byte{10, 77, 0, 3}}
		ip = l
	}
	out := []gopacket.SerializableLayer{eth}
	if vlan {
		out = append(out, &layers.Dot1Q{VLANIdentifier: 5, Type: eth.EthernetType})
		eth.EthernetType = layers.EthernetTypeDot1Q
	}
	return append(out, ip)
}

func tcpFrame(tb testing.TB, v6 bool, payload int, flagsCWR uint8) []byte {
	ls := ipLayers(v6, false, layers.IPProtocolTCP)
	tcp := &layers.TCP{SrcPort: 40000, DstPort: 5201, Seq: 1, ACK: true, Ack: 1, Window: 512, CWR: flagsCWR != 0,
		Options: []layers.TCPOption{{OptionType: layers.TCPOptionKindNop}, {OptionType: layers.TCPOptionKindNop},
			{OptionType: layers.TCPOptionKindTimestamps, OptionLength: 10, OptionData: make([]byte, 8)}}}
	return buildFrame(tb, append(ls, tcp, gopacket.Payload(make([]byte, payload)))...)
}

func udpFrame(tb testing.TB, v6 bool, payload int) []byte {
	ls := ipLayers(v6, true, layers.IPProtocolUDP)
	return buildFrame(tb, append(ls, &layers.UDP{SrcPort: 4000, DstPort: 5000}, gopacket.Payload(make([]byte, payload)))...)
}

func TestBuildVnetHdr(t *testing.T) {
	arp := buildFrame(t, &layers.Ethernet{SrcMAC: macGuest, DstMAC: layers.EthernetBroadcast, EthernetType: layers.EthernetTypeARP},
		&layers.ARP{AddrType: layers.LinkTypeEthernet, Protocol: layers.EthernetTypeIPv4, HwAddressSize: 6, ProtAddressSize: 4,
			Operation: layers.ARPRequest, SourceHwAddress: macGuest, SourceProtAddress: []byte{10, 77, 0, 2},
			DstHwAddress: make([]byte, 6), DstProtAddress: []byte{10, 77, 0, 3}})
	for _, tc := range []struct {
		name  string
		frame []byte
		hdr   dataplane.FrameHdr
		want  VnetHdr
	}{
		{"arp, no offload", arp, dataplane.FrameHdr{}, VnetHdr{}},
		{"checksum complete", tcpFrame(t, false, 100, 0), dataplane.FrameHdr{IpSummed: dataplane.ChecksumComplete}, VnetHdr{}},
		{"tcp4 partial, not gso", tcpFrame(t, false, 100, 0), dataplane.FrameHdr{IpSummed: dataplane.ChecksumPartial, CsumStart: 34, CsumOffset: 16},
			VnetHdr{Flags: vnetFlagNeedsCsum, HdrLen: 52, CsumStart: 34, CsumOffset: 16}},
		{"tcp4 gso", tcpFrame(t, false, 30000, 0), dataplane.FrameHdr{GsoSize: 1448, IpSummed: dataplane.ChecksumPartial, CsumStart: 34, CsumOffset: 16},
			VnetHdr{Flags: vnetFlagNeedsCsum, GSOType: vnetGSOTCPv4, HdrLen: 14 + 20 + 32, GSOSize: 1448, CsumStart: 34, CsumOffset: 16}},
		{"tcp4 gso cwr", tcpFrame(t, false, 30000, 1), dataplane.FrameHdr{GsoSize: 1448, IpSummed: dataplane.ChecksumPartial, CsumStart: 34, CsumOffset: 16},
			VnetHdr{Flags: vnetFlagNeedsCsum, GSOType: vnetGSOTCPv4 | vnetGSOECN, HdrLen: 66, GSOSize: 1448, CsumStart: 34, CsumOffset: 16}},
		{"tcp4 gso raw ecn bit", tcpFrame(t, false, 30000, 0), dataplane.FrameHdr{GsoSize: 1448, GsoType: skbGSOTCPECN, IpSummed: dataplane.ChecksumPartial, CsumStart: 34, CsumOffset: 16},
			VnetHdr{Flags: vnetFlagNeedsCsum, GSOType: vnetGSOTCPv4 | vnetGSOECN, HdrLen: 66, GSOSize: 1448, CsumStart: 34, CsumOffset: 16}},
		{"tcp6 gso", tcpFrame(t, true, 30000, 0), dataplane.FrameHdr{GsoSize: 1428, IpSummed: dataplane.ChecksumPartial, CsumStart: 54, CsumOffset: 16},
			VnetHdr{Flags: vnetFlagNeedsCsum, GSOType: vnetGSOTCPv6, HdrLen: 14 + 40 + 32, GSOSize: 1428, CsumStart: 54, CsumOffset: 16}},
		{"udp6 gso behind vlan", udpFrame(t, true, 12000), dataplane.FrameHdr{GsoSize: 1200, IpSummed: dataplane.ChecksumPartial, CsumStart: 58, CsumOffset: 6},
			VnetHdr{Flags: vnetFlagNeedsCsum, GSOType: vnetGSOUDPL4, HdrLen: 18 + 40 + 8, GSOSize: 1200, CsumStart: 58, CsumOffset: 6}},
		{"udp4 gso behind vlan", udpFrame(t, false, 12000), dataplane.FrameHdr{GsoSize: 1200, IpSummed: dataplane.ChecksumPartial, CsumStart: 38, CsumOffset: 6},
			VnetHdr{Flags: vnetFlagNeedsCsum, GSOType: vnetGSOUDPL4, HdrLen: 18 + 20 + 8, GSOSize: 1200, CsumStart: 38, CsumOffset: 6}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.hdr.Len = uint32(len(tc.frame))
			got, err := BuildVnetHdr(&tc.hdr, tc.frame)
			if err != nil {
				t.Fatal(err)
			}
			if got != tc.want {
				t.Fatalf("got %+v\nwant %+v", got, tc.want)
			}
		})
	}
}

func TestBuildVnetHdrRejectsNonL4GSO(t *testing.T) {
	ls := ipLayers(false, false, layers.IPProtocolICMPv4)
	frame := buildFrame(t, append(ls, &layers.ICMPv4{}, gopacket.Payload(make([]byte, 3000)))...)
	h := dataplane.FrameHdr{Len: uint32(len(frame)), GsoSize: 1400}
	if _, err := BuildVnetHdr(&h, frame); !errors.Is(err, ErrGSOFrame) {
		t.Fatalf("err = %v, want ErrGSOFrame", err)
	}
	// Truncated headers never panic and are not mistaken for TCP.
	for n := 14; n < 66; n++ {
		tcp := tcpFrame(t, false, 0, 0)[:n]
		if l4 := parseL4(tcp); l4.proto != 0 && l4.off+l4.hdrLen > n {
			t.Fatalf("parseL4 accepted a header past %d bytes", n)
		}
	}
}

// FuzzBuildVnetHdr feeds arbitrary ring records that the parser accepts
// to the virtio-net header builder: it may not panic, the header must not
// reach past the frame, and it must survive Put/DecodeVnetHdr. The parser
// itself is fuzzed by dataplane's FuzzParseRecord.
func FuzzBuildVnetHdr(f *testing.F) {
	f.Add(dataplane.AppendRecord(nil, dataplane.FrameHdr{Epoch: 1}, make([]byte, 60)))
	f.Add(dataplane.AppendRecord(nil, dataplane.FrameHdr{Epoch: 2, GsoSize: 1448, IpSummed: dataplane.ChecksumPartial,
		CsumStart: 34, CsumOffset: 16}, tcpFrame(f, false, 3000, 0)))
	f.Add(dataplane.AppendRecord(nil, dataplane.FrameHdr{Epoch: 3, GsoSize: 1200, IpSummed: dataplane.ChecksumPartial,
		CsumStart: 54, CsumOffset: 6}, udpFrame(f, true, 2400)))
	f.Fuzz(func(t *testing.T, raw []byte) {
		rec, err := dataplane.ParseRecord(raw)
		if err != nil {
			return
		}
		v, err := BuildVnetHdr(&rec.Hdr, rec.Frame)
		if err != nil {
			return
		}
		if int(v.HdrLen) > len(rec.Frame) {
			t.Fatalf("hdr_len %d beyond %d-byte frame", v.HdrLen, len(rec.Frame))
		}
		var b [VnetHdrLen]byte
		v.Put(b[:])
		if back, _ := DecodeVnetHdr(b[:]); back != v {
			t.Fatalf("vnet header round trip: %+v != %+v", back, v)
		}
	})
}
