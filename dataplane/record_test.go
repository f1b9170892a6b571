// SPDX-License-Identifier: Apache-2.0

package dataplane

import (
	"bytes"
	"encoding/binary"
	"errors"
	"testing"
)

var recordErrors = []error{ErrShortRecord, ErrRecordLength, ErrFrameSize, ErrChecksum, ErrColour}

func TestRecordHeaderSize(t *testing.T) {
	if n := binary.Size(FrameHdr{}); n != RecordHeaderLen {
		t.Fatalf("frame_hdr is %d bytes, contract says %d", n, RecordHeaderLen)
	}
}

// TestRecordLayout checks the hand-written offsets of decodeFrameHdr and
// AppendRecord against the bpf2go type, encoded by encoding/binary.
func TestRecordLayout(t *testing.T) {
	frame := bytes.Repeat([]byte{0xab}, 60)
	h := FrameHdr{Epoch: 0x0102030405060708, TstampNs: 0x1112131415161718, Len: uint32(len(frame)),
		Ifindex: 0x21222324, GsoSize: 0x3132, GsoSegs: 0x4142, GsoType: 0x5152, IpSummed: ChecksumPartial,
		Flags: 0x61, CsumStart: 34, CsumOffset: 16, Colour: 0x71727374}
	want, err := binary.Append(nil, binary.LittleEndian, &h)
	if err != nil {
		t.Fatal(err)
	}
	want = append(want, frame...)
	got := AppendRecord(nil, h, frame)
	if !bytes.Equal(got, want) {
		t.Fatalf("AppendRecord\n got %x\nwant %x", got, want)
	}
	if d := decodeFrameHdr(want); d != h {
		t.Fatalf("decoded %+v, want %+v", d, h)
	}
}

func TestParseRecord(t *testing.T) {
	frame := bytes.Repeat([]byte{0xab}, 60)
	h := FrameHdr{Epoch: 7, TstampNs: 123456789, Len: 999, Ifindex: 4, GsoSize: 1448, GsoSegs: 3, GsoType: 5,
		IpSummed: ChecksumPartial, Flags: FrameLogBroken | FrameInternal, CsumStart: 34, CsumOffset: 16, Colour: 4095}
	raw := AppendRecord([]byte{0xee}, h, frame)[1:] // AppendRecord appends to dst
	r, err := ParseRecord(raw)
	if err != nil {
		t.Fatal(err)
	}
	h.Len = uint32(len(frame)) // AppendRecord sets Len from the frame
	if r.Hdr != h {
		t.Fatalf("header = %+v, want %+v", r.Hdr, h)
	}
	if !bytes.Equal(r.Frame, frame) || &r.Frame[0] != &raw[RecordHeaderLen] {
		t.Fatal("frame differs or does not alias the record")
	}
}

func TestParseRecordErrors(t *testing.T) {
	frame := make([]byte, 60)
	good := AppendRecord(nil, FrameHdr{Epoch: 1}, frame)
	lenWrong := bytes.Clone(good)
	lenWrong[16] = 61
	huge := AppendRecord(nil, FrameHdr{}, make([]byte, MaxFrameLen+1))
	for _, tc := range []struct {
		name string
		raw  []byte
		want error
	}{
		{"empty", nil, ErrShortRecord},
		{"short header", good[:RecordHeaderLen-1], ErrShortRecord},
		{"truncated frame", good[:len(good)-1], ErrRecordLength},
		{"len too big", lenWrong, ErrRecordLength},
		{"runt frame", AppendRecord(nil, FrameHdr{}, frame[:MinFrameLen-1]), ErrFrameSize},
		{"huge frame", huge, ErrFrameSize},
		{"bad ip_summed", AppendRecord(nil, FrameHdr{IpSummed: ChecksumPartial + 1}, frame), ErrChecksum},
		{"csum past frame", AppendRecord(nil, FrameHdr{IpSummed: ChecksumPartial, CsumStart: 50, CsumOffset: 9}, frame), ErrChecksum},
		{"csum in ethernet header", AppendRecord(nil, FrameHdr{IpSummed: ChecksumPartial, CsumStart: 2, CsumOffset: 6}, frame), ErrChecksum},
		{"colour wider than the tag", AppendRecord(nil, FrameHdr{Flags: FrameInternal, Colour: 4096}, frame), ErrColour},
		{"colour on an external frame", AppendRecord(nil, FrameHdr{Colour: 5}, frame), ErrColour},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseRecord(tc.raw)
			if !errors.Is(err, tc.want) || !errors.Is(err, ErrBadRecord) {
				t.Fatalf("err = %v, want %v and %v", err, tc.want, ErrBadRecord)
			}
		})
	}
	// The edges themselves are valid.
	for _, raw := range [][]byte{
		AppendRecord(nil, FrameHdr{}, frame[:MinFrameLen]),
		AppendRecord(nil, FrameHdr{}, make([]byte, MaxFrameLen)),
		AppendRecord(nil, FrameHdr{IpSummed: ChecksumPartial, CsumStart: MinFrameLen, CsumOffset: 44}, frame),
		AppendRecord(nil, FrameHdr{Flags: FrameInternal}, frame), // round 4096 wraps to colour 0
		AppendRecord(nil, FrameHdr{Flags: FrameInternal, Colour: 4095}, frame),
	} {
		if _, err := ParseRecord(raw); err != nil {
			t.Errorf("%d-byte record: %v", len(raw), err)
		}
	}
}

// FuzzParseRecord feeds arbitrary ring records to the parser: it may not
// panic, every error must name its cause, and anything accepted must be
// self-consistent, agree with encoding/binary on the generated type and
// re-encode to the same bytes.
func FuzzParseRecord(f *testing.F) {
	f.Add(AppendRecord(nil, FrameHdr{Epoch: 1}, make([]byte, 60)))
	f.Add(AppendRecord(nil, FrameHdr{IpSummed: ChecksumPartial, CsumStart: 34, CsumOffset: 6}, make([]byte, 54)))
	f.Add(AppendRecord(nil, FrameHdr{Epoch: 2, GsoSize: 1448, GsoSegs: 3, IpSummed: ChecksumPartial, CsumStart: 34, CsumOffset: 16},
		make([]byte, 3000)))
	f.Add(AppendRecord(nil, FrameHdr{Epoch: 3, GsoSize: 1200, IpSummed: ChecksumPartial, CsumStart: 58, CsumOffset: 6},
		make([]byte, 2400)))
	f.Add(AppendRecord(nil, FrameHdr{Epoch: 4, Flags: FrameInternal, Colour: 5}, make([]byte, 60)))
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := ParseRecord(b)
		if err != nil {
			n := 0
			for _, e := range recordErrors {
				if errors.Is(err, e) {
					n++
				}
			}
			if n != 1 || !errors.Is(err, ErrBadRecord) {
				t.Fatalf("error %q wraps %d causes", err, n)
			}
			return
		}
		if int(r.Hdr.Len) != len(r.Frame) || len(r.Frame)+RecordHeaderLen != len(b) ||
			len(r.Frame) < MinFrameLen || len(r.Frame) > MaxFrameLen {
			t.Fatalf("len %d, frame %d, input %d", r.Hdr.Len, len(r.Frame), len(b))
		}
		if r.Hdr.IpSummed == ChecksumPartial && int(r.Hdr.CsumStart)+int(r.Hdr.CsumOffset)+2 > len(r.Frame) {
			t.Fatalf("checksum field %d+%d outside %d-byte frame", r.Hdr.CsumStart, r.Hdr.CsumOffset, len(r.Frame))
		}
		if r.Hdr.Colour > 0xfff || (r.Hdr.Colour != 0 && r.Hdr.Flags&FrameInternal == 0) {
			t.Fatalf("colour %d accepted with flags %#x", r.Hdr.Colour, r.Hdr.Flags)
		}
		var ref FrameHdr
		if _, err := binary.Decode(b, binary.LittleEndian, &ref); err != nil || ref != r.Hdr {
			t.Fatalf("parsed %+v, encoding/binary %+v (%v)", r.Hdr, ref, err)
		}
		if !bytes.Equal(AppendRecord(nil, r.Hdr, r.Frame), b) {
			t.Fatal("re-encoding differs")
		}
	})
}

// BenchmarkParseRecord is the parser's share of netbuf's per-frame path
// (a 1514-byte CHECKSUM_PARTIAL frame); it must not allocate.
func BenchmarkParseRecord(b *testing.B) {
	raw := AppendRecord(nil, FrameHdr{Epoch: 2, IpSummed: ChecksumPartial, CsumStart: 34, CsumOffset: 16}, make([]byte, 1514))
	b.ReportAllocs()
	b.SetBytes(int64(len(raw)))
	for b.Loop() {
		if _, err := ParseRecord(raw); err != nil {
			b.Fatal(err)
		}
	}
}
