// SPDX-License-Identifier: Apache-2.0

package wire_test

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/resilire/resilire/checkpointer/codec"
	"github.com/resilire/resilire/checkpointer/wire"
)

// validStream is a well-formed primary stream: hello, one checkpoint.
func validStream() []byte {
	var b []byte
	h := wire.HelloMsg{MemSize: 2 * codec.PageSize, VM: "vm1", Codec: "raw"}
	hp, err := h.Marshal()
	if err != nil {
		panic(err)
	}
	b = append(wire.AppendHeader(b, wire.Hello, len(hp)), hp...)
	m := wire.CheckpointMsg{Seq: 1, Epoch: 1, Kind: wire.Consistent}.Marshal()
	b = append(wire.AppendHeader(b, wire.Begin, len(m)), m...)
	var body bytes.Buffer
	enc, _ := codec.Raw{}.NewEncoder(2 * codec.PageSize)
	_, _ = enc.Encode(&body, 1, []uint64{1}, make([]byte, codec.PageSize), []byte("st"))
	b = append(wire.AppendHeader(b, wire.Data, body.Len()), body.Bytes()...)
	b = append(wire.AppendHeader(b, wire.End, len(m)), m...)
	return b
}

// FuzzFrames feeds arbitrary bytes to the frame reader, the control
// message parsers and the raw checkpoint decoder, as the backup would. It
// must never panic, never return a payload over the per-type limit, and
// never decode a checkpoint past the guest's memory.
func FuzzFrames(f *testing.F) {
	f.Add(validStream())
	f.Add([]byte{byte(wire.Data), 0, 0, 0, 0xff, 0xff, 0xff, 0xff})
	f.Add(append(wire.AppendHeader(nil, wire.HelloAck, 26), make([]byte, 26)...))
	sc, _ := wire.ScrubMsg{Epoch: 9, ChunkPages: 2, Chunks: []uint64{1, 2, 3}}.Marshal()
	f.Add(append(wire.AppendHeader(nil, wire.Scrub, len(sc)), sc...))
	rep, _ := wire.ScrubReportMsg{Epoch: 9, ChunkPages: 2, Diverged: 3, Chunks: []wire.ScrubChunk{{Index: 1, Leaves: []uint64{5, 6}}}}.Marshal()
	f.Add(append(wire.AppendHeader(nil, wire.ScrubReport, len(rep)), rep...))
	ho := wire.HandoverMsg{Epoch: 77}.Marshal()
	f.Add(append(wire.AppendHeader(nil, wire.Handover, len(ho)), ho...))
	f.Fuzz(func(t *testing.T, in []byte) {
		r := bytes.NewReader(in)
		var buf []byte
		for i := 0; i < 64; i++ {
			typ, p, nbuf, err := wire.ReadFrame(r, buf)
			buf = nbuf
			if err != nil {
				if !errors.Is(err, io.EOF) && !errors.Is(err, wire.ErrFrame) && !errors.Is(err, wire.ErrTruncated) {
					t.Fatalf("unexpected error class: %v", err)
				}
				break
			}
			if len(p) > wire.MaxPayload(typ) {
				t.Fatalf("payload %d over limit for type %d", len(p), typ)
			}
			switch typ {
			case wire.Hello:
				if h, err := wire.ParseHello(p); err == nil {
					if hp, err := h.Marshal(); err != nil || !bytes.Equal(hp, p) {
						t.Fatalf("hello does not round trip")
					}
				}
			case wire.HelloAck:
				if a, err := wire.ParseHelloAck(p); err == nil && !bytes.Equal(a.Marshal(), p) {
					t.Fatalf("hello ack does not round trip")
				}
			case wire.Scrub:
				if m, err := wire.ParseScrub(p); err == nil {
					if mp, err := m.Marshal(); err != nil || !bytes.Equal(mp, p) {
						t.Fatalf("scrub does not round trip: %v", err)
					}
				}
			case wire.ScrubReport:
				if r, err := wire.ParseScrubReport(p); err == nil {
					if rp, err := r.Marshal(); err != nil || !bytes.Equal(rp, p) {
						t.Fatalf("scrub report does not round trip: %v", err)
					}
				}
			case wire.Handover, wire.HandoverAck:
				if m, err := wire.ParseHandover(p); err == nil && (m.Epoch == 0 || !bytes.Equal(m.Marshal(), p)) {
					t.Fatalf("handover does not round trip or names epoch 0")
				}
			case wire.Begin, wire.End, wire.Ack:
				if m, err := wire.ParseCheckpoint(p); err == nil && !bytes.Equal(m.Marshal(), p) {
					t.Fatalf("checkpoint message does not round trip")
				}
			case wire.Data:
				dec, _ := codec.Raw{}.NewDecoder(2 * codec.PageSize)
				replica := make([]byte, 2*codec.PageSize)
				if s, err := dec.Decode(bytes.NewReader(p), replica); err == nil {
					s.Apply(replica) // indexes are checked: must not panic
				}
			}
		}
	})
}

// FuzzInput feeds arbitrary INPUT payloads to the decoder: it must never
// panic, and whatever it accepts round trips.
func FuzzInput(f *testing.F) {
	f.Add(wire.InputRecord{Epoch: 3, Frame: ethFrame('x')}.Marshal(nil))
	f.Add(wire.InputRecord{Epoch: 9, Broken: true}.Marshal(nil))
	f.Add(wire.InputRecord{Epoch: 4, Internal: true, Colour: 4095, Frame: ethFrame('y')}.Marshal(nil))
	f.Add([]byte{1, 2, 3})
	f.Fuzz(func(t *testing.T, p []byte) {
		r, err := wire.ParseInput(p)
		if err != nil {
			return
		}
		if len(r.Frame) > wire.MaxInputFrame || (len(r.Frame) == 0 && !r.Broken) || r.Colour > wire.MaxColour || (r.Colour != 0 && !r.Internal) {
			t.Fatalf("accepted frame of %d bytes (broken %v)", len(r.Frame), r.Broken)
		}
		if !bytes.Equal(r.Marshal(nil), p) {
			t.Fatalf("input record does not round trip")
		}
	})
}

// ethFrame is a minimal frame: an Ethernet header and one payload byte.
func ethFrame(c byte) []byte { return append(make([]byte, 14), c) }

// TestHelloRefusesLongNames: a name the hello cannot carry is refused, not
// cut to fit (a cut name could match another VM's backup).
func TestHelloRefusesLongNames(t *testing.T) {
	long := strings.Repeat("v", wire.MaxNameLen+1)
	for _, h := range []wire.HelloMsg{{VM: long, Codec: "raw"}, {VM: "vm1", Codec: long}} {
		if _, err := h.Marshal(); !errors.Is(err, wire.ErrNameTooLong) {
			t.Fatalf("hello with a %d-byte name: err %v, want ErrNameTooLong", wire.MaxNameLen+1, err)
		}
	}
	h := wire.HelloMsg{VM: strings.Repeat("v", wire.MaxNameLen), Codec: "fgbi"}
	p, err := h.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if got, err := wire.ParseHello(p); err != nil || got.VM != h.VM {
		t.Fatalf("255-byte name does not round trip: %v", err)
	}
}
