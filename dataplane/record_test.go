// SPDX-License-Identifier: Apache-2.0

package dataplane

import (
	"bytes"
	"encoding/binary"
	"errors"
	"testing"
)

func encodeRecord(h FrameHdr, frame []byte) []byte {
	h.Len = uint32(len(frame))
	b, err := binary.Append(nil, binary.LittleEndian, &h)
	if err != nil {
		panic(err)
	}
	return append(b, frame...)
}

func TestRecordHeaderSize(t *testing.T) {
	if n := binary.Size(FrameHdr{}); n != RecordHeaderLen {
		t.Fatalf("frame_hdr is %d bytes, contract says %d", n, RecordHeaderLen)
	}
}

func TestParseRecord(t *testing.T) {
	frame := bytes.Repeat([]byte{0xab}, 60)
	good := FrameHdr{Epoch: 7, TstampNs: 99, Ifindex: 3, GsoSize: 1448, GsoSegs: 2, IpSummed: ChecksumPartial, CsumStart: 34, CsumOffset: 16}
	r, err := ParseRecord(encodeRecord(good, frame))
	if err != nil {
		t.Fatal(err)
	}
	good.Len = 60
	if r.Hdr != good || !bytes.Equal(r.Frame, frame) {
		t.Fatalf("parsed %+v", r.Hdr)
	}
	bad := map[string][]byte{
		"short":      make([]byte, 39),
		"len":        encodeRecord(good, frame)[:90],
		"runt":       encodeRecord(good, frame[:10]),
		"ip_summed":  encodeRecord(FrameHdr{IpSummed: 4}, frame),
		"csum range": encodeRecord(FrameHdr{IpSummed: ChecksumPartial, CsumStart: 58, CsumOffset: 1}, frame),
	}
	for name, b := range bad {
		if _, err := ParseRecord(b); !errors.Is(err, ErrBadRecord) {
			t.Errorf("%s: err %v, want ErrBadRecord", name, err)
		}
	}
}

func FuzzParseRecord(f *testing.F) {
	f.Add(encodeRecord(FrameHdr{Epoch: 1}, make([]byte, 60)))
	f.Add(encodeRecord(FrameHdr{IpSummed: ChecksumPartial, CsumStart: 34, CsumOffset: 6}, make([]byte, 54)))
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := ParseRecord(b)
		if err != nil {
			return
		}
		if int(r.Hdr.Len) != len(r.Frame) || len(r.Frame)+RecordHeaderLen != len(b) {
			t.Fatalf("len %d, frame %d, input %d", r.Hdr.Len, len(r.Frame), len(b))
		}
		if !bytes.Equal(encodeRecord(r.Hdr, r.Frame), b) {
			t.Fatal("re-encoding differs")
		}
	})
}
