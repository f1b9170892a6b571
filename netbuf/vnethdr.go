// SPDX-License-Identifier: Apache-2.0

package netbuf

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/resilire/resilire/dataplane"
)

// VnetHdrLen is the size of struct virtio_net_hdr, the header a tap with
// IFF_VNET_HDR expects before every frame (its default vnet_hdr_sz).
const VnetHdrLen = 10

// virtio_net_hdr flags and gso types (include/uapi/linux/virtio_net.h).
const (
	vnetFlagNeedsCsum = 1
	vnetGSONone       = 0
	vnetGSOTCPv4      = 1
	vnetGSOTCPv6      = 4
	vnetGSOUDPL4      = 5
	vnetGSOECN        = 0x80
)

// skbGSOTCPECN is SKB_GSO_TCP_ECN in the kernel's raw gso_type bits.
const skbGSOTCPECN = 1 << 2

// ErrGSOFrame means a GSO record's frame is not TCP or UDP over IPv4/IPv6,
// so no virtio gso type describes it.
var ErrGSOFrame = errors.New("gso record carries no tcp or udp header")

// VnetHdr is a decoded struct virtio_net_hdr.
type VnetHdr struct {
	Flags      uint8
	GSOType    uint8
	HdrLen     uint16
	GSOSize    uint16
	CsumStart  uint16
	CsumOffset uint16
}

// Put writes h into b[:VnetHdrLen] in the tap's (little-endian) layout.
func (h VnetHdr) Put(b []byte) {
	_ = b[VnetHdrLen-1]
	le := binary.LittleEndian
	b[0] = h.Flags
	b[1] = h.GSOType
	le.PutUint16(b[2:], h.HdrLen)
	le.PutUint16(b[4:], h.GSOSize)
	le.PutUint16(b[6:], h.CsumStart)
	le.PutUint16(b[8:], h.CsumOffset)
}

// DecodeVnetHdr reads a virtio_net_hdr from b (at least VnetHdrLen bytes).
func DecodeVnetHdr(b []byte) (VnetHdr, error) {
	if len(b) < VnetHdrLen {
		return VnetHdr{}, fmt.Errorf("virtio_net_hdr: %d bytes: %w", len(b), dataplane.ErrShortRecord)
	}
	le := binary.LittleEndian
	return VnetHdr{Flags: b[0], GSOType: b[1], HdrLen: le.Uint16(b[2:]), GSOSize: le.Uint16(b[4:]),
		CsumStart: le.Uint16(b[6:]), CsumOffset: le.Uint16(b[8:])}, nil
}

// BuildVnetHdr rebuilds the virtio-net header the kernel would have given
// the frame on a tap: NEEDS_CSUM with csum_start/offset when the skb was
// CHECKSUM_PARTIAL, and for GSO records gso_size plus a gso type derived
// from the frame itself (the capture's raw gso_type bits are not portable).
func BuildVnetHdr(h *dataplane.FrameHdr, frame []byte) (VnetHdr, error) {
	var v VnetHdr
	if h.IpSummed == dataplane.ChecksumPartial {
		v.Flags = vnetFlagNeedsCsum
		v.CsumStart, v.CsumOffset = h.CsumStart, h.CsumOffset
		v.HdrLen = h.CsumStart + h.CsumOffset + 2
	}
	if h.GsoSize == 0 {
		return v, nil
	}
	l4 := parseL4(frame)
	switch {
	case l4.proto == protoTCP && l4.ipv4:
		v.GSOType = vnetGSOTCPv4
	case l4.proto == protoTCP:
		v.GSOType = vnetGSOTCPv6
	case l4.proto == protoUDP:
		v.GSOType = vnetGSOUDPL4
	default:
		return VnetHdr{}, fmt.Errorf("%w (gso_size %d, %d bytes)", ErrGSOFrame, h.GsoSize, len(frame))
	}
	if l4.proto == protoTCP && (l4.cwr || h.GsoType&skbGSOTCPECN != 0) {
		v.GSOType |= vnetGSOECN
	}
	v.GSOSize = h.GsoSize
	v.HdrLen = uint16(l4.off + l4.hdrLen)
	return v, nil
}

const (
	protoTCP = 6
	protoUDP = 17
)

// l4Info locates the transport header of an Ethernet frame.
type l4Info struct {
	proto  uint8 // 0 when no TCP/UDP header was found
	ipv4   bool
	l3     int   // offset of the IP header, 0 when the frame is not IP
	ipNext uint8 // IP protocol (upper layer) when l3 != 0
	off    int   // offset of the transport header
	hdrLen int   // its length
	cwr    bool  // TCP CWR flag
}

// parseL4 walks Ethernet, up to two VLAN tags, IPv4 or IPv6 (with its
// common extension headers) to a TCP or UDP header. It never reads past
// frame and returns proto 0 when it cannot get there.
func parseL4(frame []byte) l4Info {
	be := binary.BigEndian
	if len(frame) < 14 {
		return l4Info{}
	}
	off, etype := 14, be.Uint16(frame[12:])
	for i := 0; i < 2 && (etype == 0x8100 || etype == 0x88a8); i++ {
		if len(frame) < off+4 {
			return l4Info{}
		}
		etype = be.Uint16(frame[off+2:])
		off += 4
	}
	var info l4Info
	var proto uint8
	switch etype {
	case 0x0800:
		if len(frame) < off+20 || frame[off]>>4 != 4 {
			return l4Info{}
		}
		ihl := int(frame[off]&0x0f) * 4
		if ihl < 20 || len(frame) < off+ihl {
			return l4Info{}
		}
		info.ipv4, info.l3, proto, off = true, off, frame[off+9], off+ihl
	case 0x86dd:
		l3 := off
		var ok bool
		if proto, off, ok = skipIPv6(frame, off); !ok {
			return l4Info{}
		}
		info.l3 = l3
	default:
		return l4Info{}
	}
	info.ipNext = proto
	switch proto {
	case protoTCP:
		if len(frame) < off+20 {
			return info
		}
		doff := int(frame[off+12]>>4) * 4
		if doff < 20 || len(frame) < off+doff {
			return info
		}
		info.proto, info.off, info.hdrLen, info.cwr = protoTCP, off, doff, frame[off+13]&0x80 != 0
	case protoUDP:
		if len(frame) < off+8 {
			return info
		}
		info.proto, info.off, info.hdrLen = protoUDP, off, 8
	}
	return info
}

// skipIPv6 returns the upper-layer protocol and its offset, skipping
// hop-by-hop, routing and destination-options headers (bounded).
func skipIPv6(frame []byte, off int) (uint8, int, bool) {
	if len(frame) < off+40 || frame[off]>>4 != 6 {
		return 0, 0, false
	}
	next, off := frame[off+6], off+40
	for i := 0; i < 8; i++ {
		switch next {
		case 0, 43, 60: // hop-by-hop, routing, destination options
			if len(frame) < off+8 {
				return 0, 0, false
			}
			next, off = frame[off], off+(int(frame[off+1])+1)*8
		default:
			return next, off, true
		}
	}
	return 0, 0, false
}
