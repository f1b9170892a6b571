// SPDX-License-Identifier: Apache-2.0

package dataplane

import "encoding/binary"

// CompleteChecksum makes the L4 checksum of a logged frame valid for a
// receiver that gets no offload metadata (the input replay writes frames
// bare), as skb_checksum_help would:
//
//   - CHECKSUM_PARTIAL (kern-ctx input log): the field at csum_start +
//     csum_offset holds the pseudo-header sum; the rest of the sum is added.
//   - FrameMetaUnknown (portable input log, which cannot read ip_summed):
//     the frame is parsed (Ethernet, one optional 802.1Q tag, IPv4 without
//     fragmentation or IPv6 without extension headers, TCP or UDP). A
//     checksum that already verifies is left alone; a field holding exactly
//     the folded pseudo-header sum, which is what the kernel leaves in a
//     CHECKSUM_PARTIAL frame, is completed. Anything else (a frame damaged
//     in flight) is left as it is, so the guest still rejects it.
//
// It never panics and never reads or writes outside f.
func CompleteChecksum(h *FrameHdr, f []byte) {
	if h.IpSummed == ChecksumPartial {
		start, off := int(h.CsumStart), int(h.CsumStart)+int(h.CsumOffset)
		if start < len(f) && off+2 <= len(f) {
			fill(f[start:], off-start, 0)
		}
		return
	}
	if h.Flags&FrameMetaUnknown == 0 {
		return
	}
	l4, field, pseudo, ok := parseL4(f)
	if !ok {
		return
	}
	cur := binary.BigEndian.Uint16(l4[field:])
	if cur == 0 && field == udpCsumOff && len(f) > 13 && etherType(f) == 0x0800 {
		return // IPv4 UDP without a checksum
	}
	if fold(sum(l4, uint32(pseudo))) == 0xffff {
		return // already complete
	}
	if cur == pseudo {
		fill(l4, field, 0)
	}
}

// Offsets of the checksum field in the L4 header.
const (
	tcpCsumOff = 16
	udpCsumOff = 6
)

// fill writes the one's complement of the sum of b, whose field at off
// holds the pseudo-header sum (plus extra), into that field.
func fill(b []byte, off int, extra uint32) {
	s := fold(sum(b, extra))
	if s != 0xffff {
		s = ^s
	} else {
		s = 0xffff // a zero result is sent as 0xffff (RFC 768; harmless for TCP)
	}
	binary.BigEndian.PutUint16(b[off:], s)
}

// etherType returns the frame's EtherType after at most one 802.1Q tag.
func etherType(f []byte) uint16 {
	t := binary.BigEndian.Uint16(f[12:])
	if t == 0x8100 && len(f) >= 18 {
		t = binary.BigEndian.Uint16(f[16:])
	}
	return t
}

// parseL4 finds the TCP or UDP segment of f (bounded by the IP length, so
// Ethernet padding is excluded), the offset of its checksum field, and the
// folded pseudo-header sum.
func parseL4(f []byte) (l4 []byte, field int, pseudo uint16, ok bool) {
	if len(f) < 14 {
		return nil, 0, 0, false
	}
	l3 := 14
	if binary.BigEndian.Uint16(f[12:]) == 0x8100 {
		l3 = 18
	}
	if len(f) < l3 {
		return nil, 0, 0, false
	}
	var proto uint8
	var ps uint32
	ip := f[l3:]
	switch etherType(f) {
	case 0x0800:
		if len(ip) < 20 || ip[0]>>4 != 4 {
			return nil, 0, 0, false
		}
		ihl := int(ip[0]&0xf) * 4
		total := int(binary.BigEndian.Uint16(ip[2:]))
		if ihl < 20 || total < ihl || total > len(ip) || binary.BigEndian.Uint16(ip[6:])&0x3fff != 0 {
			return nil, 0, 0, false // bad lengths, or a fragment
		}
		proto, l4 = ip[9], ip[ihl:total]
		ps = sum(ip[12:20], 0)
	case 0x86dd:
		if len(ip) < 40 || ip[0]>>4 != 6 {
			return nil, 0, 0, false
		}
		plen := int(binary.BigEndian.Uint16(ip[4:]))
		if plen == 0 || 40+plen > len(ip) {
			return nil, 0, 0, false // jumbogram or truncated
		}
		proto, l4 = ip[6], ip[40:40+plen]
		ps = sum(ip[8:40], 0)
	default:
		return nil, 0, 0, false
	}
	switch proto {
	case 6:
		field = tcpCsumOff
	case 17:
		field = udpCsumOff
	default:
		return nil, 0, 0, false
	}
	if len(l4) < field+2 || len(l4) > 0xffff {
		return nil, 0, 0, false
	}
	ps += uint32(proto) + uint32(len(l4))
	return l4, field, fold(ps), true
}

// sum adds b as big-endian 16-bit words (an odd last byte padded with zero)
// to acc, without folding.
func sum(b []byte, acc uint32) uint32 {
	for ; len(b) >= 2; b = b[2:] {
		acc += uint32(binary.BigEndian.Uint16(b))
	}
	if len(b) == 1 {
		acc += uint32(b[0]) << 8
	}
	return acc
}

// fold reduces a 32-bit one's complement sum to 16 bits.
func fold(s uint32) uint16 {
	for s>>16 != 0 {
		s = s&0xffff + s>>16
	}
	return uint16(s)
}
