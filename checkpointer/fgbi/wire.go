// SPDX-License-Identifier: Apache-2.0

package fgbi

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"slices"
)

// Version is the wire format version this package writes and reads.
const Version = 1

const (
	headerSize = 44
	recordSize = 20

	recChunk   = 1
	recState   = 2
	recTrailer = 3

	codecRaw = 0
	codecS2  = 1

	flagState = 1
)

var (
	magic  = [4]byte{'R', 'S', 'F', 'G'}
	crcTab = crc32.MakeTable(crc32.Castagnoli)
)

// header is the fixed checkpoint header.
type header struct {
	flags     uint16
	epoch     uint64
	memSize   uint64
	blockSize uint32
}

func (h header) marshal() []byte {
	b := make([]byte, headerSize)
	copy(b, magic[:])
	binary.LittleEndian.PutUint16(b[4:], Version)
	binary.LittleEndian.PutUint16(b[6:], h.flags)
	binary.LittleEndian.PutUint64(b[8:], h.epoch)
	binary.LittleEndian.PutUint64(b[16:], h.memSize)
	binary.LittleEndian.PutUint32(b[24:], h.blockSize)
	binary.LittleEndian.PutUint32(b[40:], crc32.Checksum(b[:40], crcTab))
	return b
}

func parseHeader(b []byte) (header, error) {
	var h header
	if [4]byte(b[:4]) != magic {
		return h, fmt.Errorf("bad magic %q: %w", b[:4], ErrCorrupt)
	}
	if v := binary.LittleEndian.Uint16(b[4:]); v != Version {
		return h, fmt.Errorf("version %d, this build reads %d: %w", v, Version, ErrVersion)
	}
	if got, want := crc32.Checksum(b[:40], crcTab), binary.LittleEndian.Uint32(b[40:]); got != want {
		return h, fmt.Errorf("header checksum %08x, want %08x: %w", got, want, ErrCorrupt)
	}
	h.flags = binary.LittleEndian.Uint16(b[6:])
	h.epoch = binary.LittleEndian.Uint64(b[8:])
	h.memSize = binary.LittleEndian.Uint64(b[16:])
	h.blockSize = binary.LittleEndian.Uint32(b[24:])
	if binary.LittleEndian.Uint64(b[28:]) != 0 || binary.LittleEndian.Uint32(b[36:]) != 0 || h.flags&^flagState != 0 {
		return h, fmt.Errorf("reserved header bits set: %w", ErrCorrupt)
	}
	return h, nil
}

// record is one record's header.
type record struct {
	typ, codec uint8
	seq        uint32
	encLen     uint32 // payload bytes on the wire
	rawLen     uint32 // payload bytes after decompression
}

// recordWriter writes records and keeps the running CRC32C of everything
// written, which the trailer carries.
type recordWriter struct {
	w   io.Writer
	crc uint32
	n   int64
}

func (rw *recordWriter) write(b []byte) error {
	rw.crc = crc32.Update(rw.crc, crcTab, b)
	return rw.put(b)
}

// put writes b without adding it to the running CRC.
func (rw *recordWriter) put(b []byte) error {
	n, err := rw.w.Write(b)
	rw.n += int64(n)
	if err != nil {
		return fmt.Errorf("write checkpoint: %w", err)
	}
	return nil
}

func (rw *recordWriter) record(r record, payload []byte) error {
	var h [recordSize]byte
	h[0], h[1] = r.typ, r.codec
	binary.LittleEndian.PutUint32(h[4:], r.seq)
	binary.LittleEndian.PutUint32(h[8:], uint32(len(payload)))
	binary.LittleEndian.PutUint32(h[12:], r.rawLen)
	// The payload is read once: its CRC joins both the record's and the
	// running one by combination.
	pc := crc32.Checksum(payload, crcTab)
	binary.LittleEndian.PutUint32(h[16:], crcCombine(crc32.Checksum(h[:16], crcTab), pc, len(payload)))
	if err := rw.write(h[:]); err != nil {
		return err
	}
	rw.crc = crcCombine(rw.crc, pc, len(payload))
	return rw.put(payload)
}

// trailer is the last record: the epoch again, how many chunk records and
// pages came before it, and the CRC32C of all preceding bytes, so a
// truncated, reordered, spliced or replayed checkpoint fails as a whole.
type trailer struct {
	epoch    uint64
	chunks   uint32
	pages    uint32
	crc      uint32
	chunksIn int // encoder only: chunks of input, sent or not
}

const trailerSize = 20

// trailer writes the trailer record for tr with the running CRC.
func (rw *recordWriter) trailer(tr trailer) error {
	var p [trailerSize]byte
	binary.LittleEndian.PutUint64(p[:], tr.epoch)
	binary.LittleEndian.PutUint32(p[8:], tr.chunks)
	binary.LittleEndian.PutUint32(p[12:], tr.pages)
	binary.LittleEndian.PutUint32(p[16:], rw.crc)
	return rw.record(record{typ: recTrailer, rawLen: trailerSize}, p[:])
}

func parseTrailer(p []byte) trailer {
	return trailer{epoch: binary.LittleEndian.Uint64(p), chunks: binary.LittleEndian.Uint32(p[8:]),
		pages: binary.LittleEndian.Uint32(p[12:]), crc: binary.LittleEndian.Uint32(p[16:])}
}

// recordReader reads records with the same running CRC.
type recordReader struct {
	r   io.Reader
	crc uint32
}

func (rr *recordReader) full(b []byte, what string) error {
	if err := rr.get(b, what); err != nil {
		return err
	}
	rr.crc = crc32.Update(rr.crc, crcTab, b)
	return nil
}

// get reads exactly len(b) bytes without adding them to the running CRC.
func (rr *recordReader) get(b []byte, what string) error {
	if _, err := io.ReadFull(rr.r, b); err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return fmt.Errorf("reading %s: %w", what, ErrTruncated)
		}
		return fmt.Errorf("reading %s: %w", what, err)
	}
	return nil
}

// next reads one record whose payload may be at most maxEnc bytes on the
// wire and maxRaw bytes decompressed; buf is reused for the payload.
func (rr *recordReader) next(buf []byte, maxEnc, maxRaw uint32) (record, []byte, error) {
	var h [recordSize]byte
	var r record
	if err := rr.full(h[:], "record header"); err != nil {
		return r, buf, err
	}
	r = record{typ: h[0], codec: h[1], seq: binary.LittleEndian.Uint32(h[4:]),
		encLen: binary.LittleEndian.Uint32(h[8:]), rawLen: binary.LittleEndian.Uint32(h[12:])}
	if h[2] != 0 || h[3] != 0 || r.codec > codecS2 {
		return r, buf, fmt.Errorf("record header reserved bits or codec %d: %w", r.codec, ErrCorrupt)
	}
	if r.encLen > maxEnc || r.rawLen > maxRaw || (r.codec == codecRaw && r.encLen != r.rawLen) {
		return r, buf, fmt.Errorf("record type %d: %d bytes (%d decoded), limit %d (%d): %w",
			r.typ, r.encLen, r.rawLen, maxEnc, maxRaw, ErrTooLarge)
	}
	// Grow the buffer as bytes arrive, so a lying length costs at most
	// twice what the peer really sent.
	buf = buf[:0]
	for len(buf) < int(r.encLen) {
		step := min(int(r.encLen)-len(buf), max(len(buf), 64<<10))
		buf = slices.Grow(buf, step)
		if err := rr.get(buf[len(buf):len(buf)+step], "record payload"); err != nil {
			return r, buf, err
		}
		buf = buf[:len(buf)+step]
	}
	pc := crc32.Checksum(buf, crcTab)
	rr.crc = crcCombine(rr.crc, pc, len(buf))
	c := crcCombine(crc32.Checksum(h[:16], crcTab), pc, len(buf))
	if want := binary.LittleEndian.Uint32(h[16:]); c != want {
		return r, buf, fmt.Errorf("record type %d seq %d checksum %08x, want %08x: %w", r.typ, r.seq, c, want, ErrCorrupt)
	}
	return r, buf, nil
}

func crc32c(b []byte) uint32 { return crc32.Checksum(b, crcTab) }

// castagnoliPoly is the reflected CRC32C polynomial.
const castagnoliPoly = 0x82f63b78

// crcCombine returns the CRC32C of A followed by B from crc1 = CRC32C(A),
// crc2 = CRC32C(B) and len2 = len(B), in O(log len2) (zlib's
// crc32_combine), so each payload byte is checksummed once.
func crcCombine(crc1, crc2 uint32, len2 int) uint32 {
	return multModP(x2nModP(uint64(len2), 3), crc1) ^ crc2
}

// multModP multiplies a and b modulo the CRC polynomial (reflected bit
// order: bit 31 is x^0).
func multModP(a, b uint32) uint32 {
	var p uint32
	for m := uint32(1) << 31; m != 0; m >>= 1 {
		if a&m != 0 {
			p ^= b
		}
		if b&1 != 0 {
			b = b>>1 ^ castagnoliPoly
		} else {
			b >>= 1
		}
	}
	return p
}

// x2nTable[k] is x^(2^k) modulo the CRC polynomial.
var x2nTable = func() (t [32]uint32) {
	p := uint32(1) << 30 // x^1
	for k := range t {
		t[k] = p
		p = multModP(p, p)
	}
	return t
}()

// x2nModP returns x^(n*2^k) modulo the CRC polynomial.
func x2nModP(n uint64, k uint) uint32 {
	p := uint32(1) << 31 // x^0
	for ; n != 0; n >>= 1 {
		if n&1 != 0 {
			p = multModP(x2nTable[k&31], p)
		}
		k++
	}
	return p
}
