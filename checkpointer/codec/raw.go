// SPDX-License-Identifier: Apache-2.0

package codec

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"hash"
	"hash/crc32"
	"io"

	"github.com/resilire/resilire/checkpointer/wire"
)

// Raw is the simplest checkpoint codec: every listed page whole, the
// device state, and a CRC-32C over everything. It never deltas, so any
// checkpoint stands alone. Used in tests and with --codec raw.
type Raw struct{}

const (
	rawMagic      = 0x52535257 // "RSRW"
	rawVersion    = 1
	rawHeaderLen  = 24
	rawMaxState   = 64 << 20
	rawTrailerLen = 4
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// Name implements Codec.
func (Raw) Name() string { return "raw" }

// NewEncoder implements Codec.
func (Raw) NewEncoder(memSize uint64) (Encoder, error) {
	return &rawEncoder{pages: memSize / PageSize}, nil
}

// NewDecoder implements Codec.
func (Raw) NewDecoder(memSize uint64) (Decoder, error) {
	return &rawDecoder{pages: memSize / PageSize}, nil
}

type rawEncoder struct{ pages uint64 }

// Reset implements Encoder: the raw codec keeps no memory of the backup.
func (*rawEncoder) Reset() {}

// Encode implements Encoder. Layout (little endian): magic u32, version
// u16, 0 u16, epoch u64, npages u32, statelen u32, pfns, pages, state,
// crc32c u32 of all that precedes it.
func (e *rawEncoder) Encode(w io.Writer, epoch uint64, pfns []uint64, data, state []byte) (EncodeStats, error) {
	if len(data) != len(pfns)*PageSize {
		return EncodeStats{}, fmt.Errorf("raw encode: %d bytes for %d pages: %w", len(data), len(pfns), wire.ErrCorrupt)
	}
	crc := crc32.New(castagnoli)
	bw := bufio.NewWriterSize(io.MultiWriter(w, crc), 64<<10)
	var hdr [rawHeaderLen]byte
	binary.LittleEndian.PutUint32(hdr[0:], rawMagic)
	binary.LittleEndian.PutUint16(hdr[4:], rawVersion)
	binary.LittleEndian.PutUint64(hdr[8:], epoch)
	binary.LittleEndian.PutUint32(hdr[16:], uint32(len(pfns)))
	binary.LittleEndian.PutUint32(hdr[20:], uint32(len(state)))
	// bufio.Writer errors are sticky: the Flush below reports the first.
	_, _ = bw.Write(hdr[:])
	var b [8]byte
	for _, p := range pfns {
		binary.LittleEndian.PutUint64(b[:], p)
		_, _ = bw.Write(b[:])
	}
	_, _ = bw.Write(data)
	_, _ = bw.Write(state)
	if err := bw.Flush(); err != nil {
		return EncodeStats{}, fmt.Errorf("raw encode epoch %d: %w", epoch, err)
	}
	binary.LittleEndian.PutUint32(b[:4], crc.Sum32())
	if _, err := w.Write(b[:4]); err != nil {
		return EncodeStats{}, fmt.Errorf("raw encode epoch %d trailer: %w", epoch, err)
	}
	n := int64(rawHeaderLen + 8*len(pfns) + len(data) + len(state) + rawTrailerLen)
	return EncodeStats{Pages: len(pfns), WireBytes: n}, nil
}

type rawDecoder struct{ pages uint64 }

type rawStaged struct {
	epoch uint64
	pfns  []uint64
	data  []byte
	state []byte
}

func (s *rawStaged) Epoch() uint64 { return s.epoch }
func (s *rawStaged) State() []byte { return s.state }
func (s *rawStaged) Extents(fn func(off, n uint64)) {
	for _, p := range s.pfns {
		fn(p*PageSize, PageSize)
	}
}
func (s *rawStaged) Apply(replica []byte) {
	for i, p := range s.pfns {
		copy(replica[p*PageSize:(p+1)*PageSize], s.data[i*PageSize:(i+1)*PageSize])
	}
}

// crcReader hashes everything read through it.
type crcReader struct {
	r io.Reader
	h hash.Hash32
}

func (c *crcReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.h.Write(p[:n])
	return n, err
}

// Decode implements Decoder. It reads exactly one checkpoint and checks
// every length against the guest size before allocating.
func (d *rawDecoder) Decode(r io.Reader, _ []byte) (Staged, error) {
	cr := &crcReader{r: r, h: crc32.New(castagnoli)}
	var hdr [rawHeaderLen]byte
	if _, err := io.ReadFull(cr, hdr[:]); err != nil {
		return nil, fmt.Errorf("raw header: %w", wire.TruncatedOnEOF(err))
	}
	if binary.LittleEndian.Uint32(hdr[0:]) != rawMagic {
		return nil, fmt.Errorf("raw header magic: %w", wire.ErrCorrupt)
	}
	if v := binary.LittleEndian.Uint16(hdr[4:]); v != rawVersion {
		return nil, fmt.Errorf("raw version %d: %w", v, wire.ErrCorrupt)
	}
	s := &rawStaged{epoch: binary.LittleEndian.Uint64(hdr[8:])}
	n := uint64(binary.LittleEndian.Uint32(hdr[16:]))
	stateLen := binary.LittleEndian.Uint32(hdr[20:])
	if n > d.pages || stateLen > rawMaxState {
		return nil, fmt.Errorf("raw header: %d pages, %d state bytes: %w", n, stateLen, wire.ErrCorrupt)
	}
	buf := make([]byte, n*8)
	if _, err := io.ReadFull(cr, buf); err != nil {
		return nil, fmt.Errorf("raw pfns: %w", wire.TruncatedOnEOF(err))
	}
	s.pfns = make([]uint64, n)
	for i := range s.pfns {
		p := binary.LittleEndian.Uint64(buf[i*8:])
		if p >= d.pages || (i > 0 && p <= s.pfns[i-1]) {
			return nil, fmt.Errorf("raw pfn %d at %d: %w", p, i, wire.ErrCorrupt)
		}
		s.pfns[i] = p
	}
	s.data = make([]byte, n*PageSize)
	if _, err := io.ReadFull(cr, s.data); err != nil {
		return nil, fmt.Errorf("raw pages: %w", wire.TruncatedOnEOF(err))
	}
	if stateLen > 0 {
		s.state = make([]byte, stateLen)
		if _, err := io.ReadFull(cr, s.state); err != nil {
			return nil, fmt.Errorf("raw state: %w", wire.TruncatedOnEOF(err))
		}
	}
	want := cr.h.Sum32()
	var tr [rawTrailerLen]byte
	if _, err := io.ReadFull(r, tr[:]); err != nil {
		return nil, fmt.Errorf("raw trailer: %w", wire.TruncatedOnEOF(err))
	}
	if binary.LittleEndian.Uint32(tr[:]) != want {
		return nil, fmt.Errorf("raw checksum: %w", wire.ErrCorrupt)
	}
	return s, nil
}
