// SPDX-License-Identifier: Apache-2.0

package checkpointer

import (
	"bytes"
	"errors"
	"io"
	"testing"
)

// validStream is a well-formed primary stream: hello, one checkpoint.
func validStream() []byte {
	var b []byte
	h := hello{MemSize: 2 * PageSize, VM: "vm1", Codec: "raw"}
	b = append(appendFrameHeader(b, frameHello, len(h.marshal())), h.marshal()...)
	m := ckptMsg{Seq: 1, Epoch: 1, Kind: kindEpoch}.marshal()
	b = append(appendFrameHeader(b, frameBegin, len(m)), m...)
	var body bytes.Buffer
	enc, _ := RawCodec{}.NewEncoder(2 * PageSize)
	enc.Encode(&body, 1, []uint64{1}, make([]byte, PageSize), []byte("st"))
	b = append(appendFrameHeader(b, frameData, body.Len()), body.Bytes()...)
	b = append(appendFrameHeader(b, frameEnd, len(m)), m...)
	return b
}

// FuzzFrames feeds arbitrary bytes to the frame reader, the control
// message parsers and the raw checkpoint decoder, as the backup would. It
// must never panic, never return a payload over the per-type limit, and
// never decode a checkpoint past the guest's memory.
func FuzzFrames(f *testing.F) {
	f.Add(validStream())
	f.Add([]byte{frameData, 0, 0, 0, 0xff, 0xff, 0xff, 0xff})
	f.Add(append(appendFrameHeader(nil, frameHelloAck, 26), make([]byte, 26)...))
	f.Fuzz(func(t *testing.T, in []byte) {
		r := bytes.NewReader(in)
		var buf []byte
		for i := 0; i < 64; i++ {
			typ, p, nbuf, err := readFrame(r, buf)
			buf = nbuf
			if err != nil {
				if !errors.Is(err, io.EOF) && !errors.Is(err, ErrFrame) && !errors.Is(err, ErrTruncated) {
					t.Fatalf("unexpected error class: %v", err)
				}
				break
			}
			if len(p) > maxPayload(typ) {
				t.Fatalf("payload %d over limit for type %d", len(p), typ)
			}
			switch typ {
			case frameHello:
				if h, err := parseHello(p); err == nil && !bytes.Equal(h.marshal(), p) {
					t.Fatalf("hello does not round trip")
				}
			case frameHelloAck:
				if a, err := parseHelloAck(p); err == nil && !bytes.Equal(a.marshal(), p) {
					t.Fatalf("hello ack does not round trip")
				}
			case frameBegin, frameEnd, frameAck:
				if m, err := parseCkptMsg(p); err == nil && !bytes.Equal(m.marshal(), p) {
					t.Fatalf("checkpoint message does not round trip")
				}
			case frameData:
				dec, _ := RawCodec{}.NewDecoder(2 * PageSize)
				replica := make([]byte, 2*PageSize)
				if s, err := dec.Decode(bytes.NewReader(p), replica); err == nil {
					s.Apply(replica) // indexes are checked: must not panic
				}
			}
		}
	})
}
