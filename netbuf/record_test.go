// SPDX-License-Identifier: Apache-2.0

package netbuf

import (
	"bytes"
	"errors"
	"testing"
)

func TestParseRecordRoundTrip(t *testing.T) {
	frame := bytes.Repeat([]byte{0xab}, 60)
	h := Header{Epoch: 7, TstampNS: 123456789, Ifindex: 4, GSOSize: 1448, GSOSegs: 3, GSOType: 5,
		IPSummed: SummedPartial, Flags: 1, CsumStart: 34, CsumOffset: 16}
	rec, err := ParseRecord(AppendRecord(nil, h, frame))
	if err != nil {
		t.Fatal(err)
	}
	h.Len = uint32(len(frame))
	if rec.Header != h {
		t.Fatalf("header = %+v, want %+v", rec.Header, h)
	}
	if !bytes.Equal(rec.Frame, frame) {
		t.Fatal("frame differs")
	}
}

func TestParseRecordErrors(t *testing.T) {
	good := AppendRecord(nil, Header{Epoch: 1}, make([]byte, 60))
	lenWrong := bytes.Clone(good)
	lenWrong[16] = 61
	tiny := AppendRecord(nil, Header{}, make([]byte, 10))
	badSummed := AppendRecord(nil, Header{IPSummed: 4}, make([]byte, 60))
	csumOut := AppendRecord(nil, Header{IPSummed: SummedPartial, CsumStart: 50, CsumOffset: 16}, make([]byte, 60))
	csumInEth := AppendRecord(nil, Header{IPSummed: SummedPartial, CsumStart: 2, CsumOffset: 6}, make([]byte, 60))
	for _, tc := range []struct {
		name string
		raw  []byte
		want error
	}{
		{"empty", nil, ErrShortRecord},
		{"short header", good[:39], ErrShortRecord},
		{"truncated frame", good[:len(good)-1], ErrLength},
		{"len too big", lenWrong, ErrLength},
		{"tiny frame", tiny, ErrFrameSize},
		{"bad ip_summed", badSummed, ErrChecksum},
		{"csum past frame", csumOut, ErrChecksum},
		{"csum in ethernet header", csumInEth, ErrChecksum},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := ParseRecord(tc.raw); !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
		})
	}
}

// FuzzParseRecord feeds arbitrary ring records through the parser and the
// virtio-net header builder: neither may panic, and anything accepted must
// be self-consistent.
func FuzzParseRecord(f *testing.F) {
	f.Add(AppendRecord(nil, Header{Epoch: 1}, make([]byte, 60)))
	f.Add(AppendRecord(nil, Header{Epoch: 2, GSOSize: 1448, IPSummed: SummedPartial, CsumStart: 34, CsumOffset: 16},
		tcpFrame(f, false, 3000, 0)))
	f.Add(AppendRecord(nil, Header{Epoch: 3, GSOSize: 1200, IPSummed: SummedPartial, CsumStart: 54, CsumOffset: 6},
		udpFrame(f, true, 2400)))
	f.Fuzz(func(t *testing.T, raw []byte) {
		rec, err := ParseRecord(raw)
		if err != nil {
			return
		}
		if int(rec.Len) != len(rec.Frame) || len(rec.Frame) < minFrameLen || len(rec.Frame) > MaxFrameLen {
			t.Fatalf("accepted inconsistent record: len %d frame %d", rec.Len, len(rec.Frame))
		}
		v, err := BuildVnetHdr(&rec.Header, rec.Frame)
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
