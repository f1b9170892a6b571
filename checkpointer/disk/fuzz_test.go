// SPDX-License-Identifier: Apache-2.0

package disk

import (
	"bytes"
	"encoding/binary"
	"io"
	"testing"
)

// memBackend is an in-memory image for the fuzzer.
type memBackend struct{ data []byte }

func (m *memBackend) imageSize() int64 { return int64(len(m.data)) }
func (m *memBackend) readAt(p []byte, off int64) error {
	copy(p, m.data[off:])
	return nil
}
func (m *memBackend) writeAt(p []byte, off int64, _ bool) error {
	copy(m.data[off:off+int64(len(p))], p)
	return nil
}
func (m *memBackend) flush() error { return nil }
func (m *memBackend) begin()       {}
func (m *memBackend) end()         {}

// rw reads a fixed client stream and discards the server's answers.
type rw struct {
	io.Reader
	out bytes.Buffer
}

func (r *rw) Write(p []byte) (int, error) { return r.out.Write(p) }

// clientStream is a well-formed session: flags, NBD_OPT_GO, a write, a
// read, a flush, a disconnect.
func clientStream() []byte {
	b := binary.BigEndian.AppendUint32(nil, 3)
	b = binary.BigEndian.AppendUint64(b, optMagic)
	b = binary.BigEndian.AppendUint32(b, optGo)
	b = binary.BigEndian.AppendUint32(b, 8)
	b = append(b, 0, 0, 0, 0, 0, 1, 0, infoBlockSize)
	req := func(typ, flags uint16, off uint64, n uint32) {
		b = binary.BigEndian.AppendUint32(b, reqMagic)
		b = binary.BigEndian.AppendUint16(b, flags)
		b = binary.BigEndian.AppendUint16(b, typ)
		b = binary.BigEndian.AppendUint64(b, 1)
		b = binary.BigEndian.AppendUint64(b, off)
		b = binary.BigEndian.AppendUint32(b, n)
	}
	req(cmdWrite, cmdFUA, 512, 16)
	b = append(b, bytes.Repeat([]byte{7}, 16)...)
	req(cmdRead, 0, 0, 1024)
	req(cmdFlush, 0, 0, 0)
	req(cmdDisc, 0, 0, 0)
	return b
}

// FuzzServe feeds arbitrary client bytes to the NBD server, as QEMU (or
// anything that reaches the socket) could send them. It must never panic
// or write outside the image, and a session must end.
func FuzzServe(f *testing.F) {
	f.Add(clientStream())
	f.Add(clientStream()[:40])
	f.Add([]byte{0, 0, 0, 1})
	f.Fuzz(func(t *testing.T, in []byte) {
		m := &memBackend{data: make([]byte, 8192)}
		guard := append(make([]byte, 0, 8192+64), m.data...)
		m.data = guard[:8192]
		_ = serveConn(&rw{Reader: bytes.NewReader(in)}, m)
		if !bytes.Equal(guard[8192:cap(guard)], make([]byte, cap(guard)-8192)) {
			t.Fatalf("write past the image")
		}
	})
}

// TestServeSession: the well-formed session writes where it should and
// gets success replies.
func TestServeSession(t *testing.T) {
	m := &memBackend{data: make([]byte, 8192)}
	c := &rw{Reader: bytes.NewReader(clientStream())}
	if err := serveConn(c, m); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(m.data[512:528], bytes.Repeat([]byte{7}, 16)) || m.data[511] != 0 || m.data[528] != 0 {
		t.Fatalf("write landed wrong")
	}
	if bytes.Contains(c.out.Bytes(), []byte{0, 0, 0, errInval}) {
		t.Fatalf("a request was refused: % x", c.out.Bytes())
	}
}
