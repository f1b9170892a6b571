// SPDX-License-Identifier: Apache-2.0

package dataplane

import (
	"encoding/binary"
	"testing"
)

// onesSum is the folded one's-complement sum of b.
func onesSum(b []byte) uint16 {
	var sum uint32
	for ; len(b) >= 2; b = b[2:] {
		sum += uint32(binary.BigEndian.Uint16(b))
	}
	if len(b) == 1 {
		sum += uint32(b[0]) << 8
	}
	for sum>>16 != 0 {
		sum = sum&0xffff + sum>>16
	}
	return uint16(sum)
}

func TestCompleteChecksum(t *testing.T) {
	for _, n := range []int{60, 61, 1514} {
		f := make([]byte, n)
		for i := range f {
			f[i] = byte(i*31 + 7)
		}
		const start, off = 34, 16 // TCP over IPv4: the checksum field
		pseudo := uint16(0x1234)
		binary.BigEndian.PutUint16(f[start+off:], pseudo)
		h := FrameHdr{IpSummed: ChecksumPartial, CsumStart: start, CsumOffset: off}
		CompleteChecksum(&h, f)
		// A correct checksum makes the range plus the pseudo-header sum fold to 0xffff.
		var sum [4]byte
		binary.BigEndian.PutUint16(sum[:], onesSum(f[start:]))
		binary.BigEndian.PutUint16(sum[2:], pseudo)
		if got := onesSum(sum[:]); got != 0xffff {
			t.Fatalf("%d bytes: checksum does not verify (sum %#x)", n, got)
		}
		before := append([]byte(nil), f...)
		CompleteChecksum(&FrameHdr{IpSummed: ChecksumUnnecessary, CsumStart: start, CsumOffset: off}, f)
		if string(before) != string(f) {
			t.Fatalf("frame without CHECKSUM_PARTIAL changed")
		}
	}
}
