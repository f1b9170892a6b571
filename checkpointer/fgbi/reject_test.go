// SPDX-License-Identifier: Apache-2.0

package fgbi

import (
	"bytes"
	"encoding/binary"
	"errors"
	"math/rand/v2"
	"testing"
)

// fixture is a decoder that applied epoch 0 of a guest, and the encoded
// epoch 1 (several chunks and a state delta), ready to be mangled.
type fixture struct {
	cfg     Config
	dec     *Decoder
	replica []byte
	snap    []byte
	stream  []byte
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	cfg := Config{MemSize: 600 * PageSize, Sharing: true, Compression: true, Workers: 2}
	g := newGuest(600, 9)
	enc, _ := NewEncoder(cfg)
	f := &fixture{cfg: cfg, replica: make([]byte, cfg.MemSize)}
	f.dec, _ = NewDecoder(cfg)
	for ep := 0; ep < 2; ep++ {
		if ep == 1 {
			g.step(200)
			for p := uint64(0); p < 600; p += 2 { // enough pages for 2 chunks
				g.touch(p)[p%PageSize]++
			}
		}
		pfns, data := g.harvest()
		var buf bytes.Buffer
		if _, err := enc.Encode(&buf, uint64(ep), pfns, data, g.state); err != nil {
			t.Fatal(err)
		}
		if ep == 0 {
			s, err := f.dec.Decode(&buf, f.replica)
			if err != nil {
				t.Fatal(err)
			}
			s.Apply(f.replica)
		} else {
			f.stream = buf.Bytes()
		}
	}
	f.snap = bytes.Clone(f.replica)
	if n := len(f.records()); n < 4 {
		t.Fatalf("fixture has %d records, want 2+ chunks, state, trailer", n)
	}
	return f
}

// records splits the stream after the header into whole records.
func (f *fixture) records() [][]byte {
	var out [][]byte
	for b := f.stream[headerSize:]; len(b) >= recordSize; {
		n := recordSize + int(binary.LittleEndian.Uint32(b[8:]))
		out = append(out, b[:n])
		b = b[n:]
	}
	return out
}

func (f *fixture) join(recs ...[]byte) []byte {
	return bytes.Join(append([][]byte{f.stream[:headerSize]}, recs...), nil)
}

// expect decodes b and checks it fails with want, leaving the replica alone.
func (f *fixture) expect(t *testing.T, b []byte, want error) {
	t.Helper()
	_, err := f.dec.Decode(bytes.NewReader(b), f.replica)
	if !errors.Is(err, want) {
		t.Fatalf("decode error %v, want %v", err, want)
	}
	if !bytes.Equal(f.replica, f.snap) {
		t.Fatal("replica changed by a rejected checkpoint")
	}
}

func TestRejectGoodFixtureDecodes(t *testing.T) {
	f := newFixture(t)
	if _, err := f.dec.Decode(bytes.NewReader(f.stream), f.replica); err != nil {
		t.Fatalf("unmangled fixture: %v", err)
	}
}

func TestRejectTruncated(t *testing.T) {
	f := newFixture(t)
	for _, n := range []int{0, 1, headerSize - 1, headerSize, headerSize + 7, len(f.stream) / 2, len(f.stream) - 1} {
		f.expect(t, f.stream[:n], ErrTruncated)
	}
}

func TestRejectReordered(t *testing.T) {
	f := newFixture(t)
	r := f.records()
	f.expect(t, f.join(append([][]byte{r[1], r[0]}, r[2:]...)...), ErrOrder)
	// State record before the last chunk.
	f.expect(t, f.join(append([][]byte{r[0], r[len(r)-2], r[1]}, r[len(r)-1])...), ErrOrder)
}

func TestRejectDuplicated(t *testing.T) {
	f := newFixture(t)
	r := f.records()
	f.expect(t, f.join(append([][]byte{r[0], r[0]}, r[1:]...)...), ErrOrder)
	// A record dropped: the trailer arrives where a chunk belongs.
	f.expect(t, f.join(r[1:]...), ErrOrder)
}

func TestRejectBitFlips(t *testing.T) {
	f := newFixture(t)
	rng := rand.New(rand.NewPCG(1, 2))
	sentinels := []error{ErrCorrupt, ErrVersion, ErrRange, ErrTooLarge, ErrTruncated, ErrOrder, ErrConfig}
	for i := 0; i < 300; i++ {
		b := bytes.Clone(f.stream)
		pos := rng.IntN(len(b))
		b[pos] ^= 1 << rng.IntN(8)
		_, err := f.dec.Decode(bytes.NewReader(b), f.replica)
		known := false
		for _, s := range sentinels {
			known = known || errors.Is(err, s)
		}
		if !known {
			t.Fatalf("flip at %d: error %v is none of the package's", pos, err)
		}
		// Inside a payload only the checksum can notice.
		if pos >= headerSize+recordSize && pos < headerSize+len(f.records()[0]) && !errors.Is(err, ErrCorrupt) {
			t.Fatalf("flip in chunk payload at %d: %v, want ErrCorrupt", pos, err)
		}
	}
	if !bytes.Equal(f.replica, f.snap) {
		t.Fatal("replica changed")
	}
}

// craft builds a checkpoint around hand-made chunk payloads with valid
// checksums, so the checks behind the checksum are reached.
func craft(cfg Config, npages uint32, chunks ...[]byte) []byte {
	var buf bytes.Buffer
	rw := &recordWriter{w: &buf}
	h := header{epoch: 5, memSize: cfg.MemSize, blockSize: 64}
	_ = rw.write(h.marshal())
	for i, c := range chunks {
		_ = rw.record(record{typ: recChunk, seq: uint32(i), rawLen: uint32(len(c))}, c)
	}
	_ = rw.trailer(trailer{epoch: 5, chunks: uint32(len(chunks)), pages: npages})
	return buf.Bytes()
}

// chunk builds a one-page chunk payload at pfn with one segment.
func chunk(pfn uint64, seg []byte, lit []byte) []byte {
	var ops []byte
	ops = binary.AppendUvarint(ops, 0)
	ops = append(ops, 0, 1)
	ops = append(ops, seg...)
	var b []byte
	for _, v := range []uint64{pfn, 1, uint64(len(ops)), 0, uint64(len(lit))} {
		b = binary.AppendUvarint(b, v)
	}
	return append(append(b, ops...), lit...)
}

func TestRejectOutOfRange(t *testing.T) {
	f := newFixture(t)
	pages := f.cfg.MemSize / PageSize
	lit := make([]byte, 64)
	f.expect(t, craft(f.cfg, 1, chunk(pages, []byte{segLit, 1}, lit)), ErrRange)
	f.expect(t, craft(f.cfg, 1, chunk(1<<62, []byte{segLit, 1}, lit)), ErrRange)
	ref := binary.AppendUvarint([]byte{segRefR, 1}, pages*64)
	f.expect(t, craft(f.cfg, 1, chunk(3, ref, nil)), ErrRange)
	f.expect(t, craft(f.cfg, 1, chunk(3, []byte{segRefL, 1, 1}, nil)), ErrRange)
	// The control: the same shape in range is accepted.
	if _, err := f.dec.Decode(bytes.NewReader(craft(f.cfg, 1, chunk(pages-1, []byte{segLit, 1}, lit))), f.replica); err != nil {
		t.Fatalf("in-range crafted chunk: %v", err)
	}
}

func TestRejectOversized(t *testing.T) {
	f := newFixture(t)
	b := bytes.Clone(f.stream)
	binary.LittleEndian.PutUint32(b[headerSize+8:], 1<<31) // first record's length
	f.expect(t, b, ErrTooLarge)
	// A chunk whose decoded size exceeds what ChunkPages pages can need.
	var buf bytes.Buffer
	rw := &recordWriter{w: &buf}
	_ = rw.write(header{epoch: 5, memSize: f.cfg.MemSize, blockSize: 64}.marshal())
	_ = rw.record(record{typ: recChunk, codec: codecS2, rawLen: f.dec.maxRaw + 1}, []byte{1, 2, 3})
	f.expect(t, buf.Bytes(), ErrTooLarge)
	// A trailer that claims more pages than the chunks carry.
	f.expect(t, craft(f.cfg, 2, chunk(3, []byte{segLit, 1}, make([]byte, 64))), ErrCorrupt)
}

func TestRejectWrongVersion(t *testing.T) {
	f := newFixture(t)
	b := bytes.Clone(f.stream)
	binary.LittleEndian.PutUint16(b[4:], Version+1)
	binary.LittleEndian.PutUint32(b[40:], crc32c(b[:40]))
	f.expect(t, b, ErrVersion)
}

func TestRejectConfigAndBase(t *testing.T) {
	f := newFixture(t)
	other, _ := NewDecoder(Config{MemSize: f.cfg.MemSize, BlockSize: 128})
	if _, err := other.Decode(bytes.NewReader(f.stream), f.replica); !errors.Is(err, ErrConfig) {
		t.Fatalf("block size mismatch: %v", err)
	}
	fresh, _ := NewDecoder(f.cfg)
	if _, err := fresh.Decode(bytes.NewReader(f.stream), f.replica); !errors.Is(err, ErrNoBase) {
		t.Fatalf("state delta on a fresh decoder: %v", err)
	}
}

// TestRejectTooManyChunkBytes sends many small-page chunks each claiming a
// large decoded size: the decoder must stop once the total exceeds what
// the guest's pages could need, before holding more.
func TestRejectTooManyChunkBytes(t *testing.T) {
	cfg := Config{MemSize: 64 * PageSize}
	dec, _ := NewDecoder(cfg)
	var buf bytes.Buffer
	rw := &recordWriter{w: &buf}
	_ = rw.write(header{epoch: 1, memSize: cfg.MemSize, blockSize: 64}.marshal())
	payload := make([]byte, 1000)
	for i := 0; i < 63; i++ {
		_ = rw.record(record{typ: recChunk, codec: codecS2, seq: uint32(i), rawLen: dec.maxRaw}, payload)
	}
	replica := make([]byte, cfg.MemSize)
	if _, err := dec.Decode(bytes.NewReader(buf.Bytes()), replica); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("decode error %v, want ErrTooLarge", err)
	}
}
