// SPDX-License-Identifier: Apache-2.0

package wire

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"

	"github.com/klauspost/compress/s2"
)

// DISK payload: epoch u64 | index u32 | count u32 | offset u64 | flags u8 |
// crc32c u32 | data. The CRC (Castagnoli) covers the 25 header bytes
// before it and the data as sent. With flag diskS2 the data is S2
// compressed (Marshal compresses where it saves an eighth or more). The
// records of one checkpoint are numbered 0..count-1 and sent after its
// memory DATA, before END; an epoch that wrote nothing sends one record
// with count 0 and no data.
const (
	diskFixedLen = 29
	diskS2       = 1
	// MaxDiskData bounds the disk data of one record (decoded).
	MaxDiskData = 256 << 10
	// MaxDiskPayload bounds a DISK frame (S2 output can exceed its input
	// by a few bytes; incompressible data is sent raw).
	MaxDiskPayload = diskFixedLen + MaxDiskData
	// DiskAlign is the alignment of every record's offset and length.
	DiskAlign = 4096
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// DiskRecord is one extent of the disk writes of a checkpoint.
type DiskRecord struct {
	Epoch uint64
	Index uint32
	Count uint32
	Off   uint64
	Data  []byte
}

// Marshal appends the DISK payload of r to dst, S2-compressing the data
// when that saves at least an eighth of it.
func (r DiskRecord) Marshal(dst []byte) []byte {
	data, flags := r.Data, byte(0)
	if len(data) > 0 {
		if enc := s2.Encode(nil, data); len(enc) <= len(data)-len(data)/8 {
			data, flags = enc, diskS2
		}
	}
	start := len(dst)
	dst = binary.LittleEndian.AppendUint64(dst, r.Epoch)
	dst = binary.LittleEndian.AppendUint32(dst, r.Index)
	dst = binary.LittleEndian.AppendUint32(dst, r.Count)
	dst = binary.LittleEndian.AppendUint64(dst, r.Off)
	dst = append(dst, flags)
	c := crc32.Update(crc32.Checksum(dst[start:], castagnoli), castagnoli, data)
	dst = binary.LittleEndian.AppendUint32(dst, c)
	return append(dst, data...)
}

// ParseDisk decodes and verifies a DISK payload. Raw data aliases p; S2
// data is decoded into a new slice. A bad length, flag or numbering is
// ErrFrame, a checksum or S2 mismatch ErrCorrupt.
func ParseDisk(p []byte) (DiskRecord, error) {
	if len(p) < diskFixedLen || len(p) > MaxDiskPayload {
		return DiskRecord{}, fmt.Errorf("disk record: %d bytes: %w", len(p), ErrFrame)
	}
	r := DiskRecord{
		Epoch: binary.LittleEndian.Uint64(p),
		Index: binary.LittleEndian.Uint32(p[8:]),
		Count: binary.LittleEndian.Uint32(p[12:]),
		Off:   binary.LittleEndian.Uint64(p[16:]),
		Data:  p[diskFixedLen:],
	}
	flags := p[24]
	want := binary.LittleEndian.Uint32(p[25:])
	if c := crc32.Update(crc32.Checksum(p[:25], castagnoli), castagnoli, r.Data); c != want {
		return r, fmt.Errorf("disk record %d of epoch %d: crc %#x, want %#x: %w", r.Index, r.Epoch, c, want, ErrCorrupt)
	}
	switch flags {
	case 0:
	case diskS2:
		n, err := s2.DecodedLen(r.Data)
		if err != nil || n > MaxDiskData {
			return r, fmt.Errorf("disk record %d: s2 length %d: %v: %w", r.Index, n, err, ErrCorrupt)
		}
		if r.Data, err = s2.Decode(make([]byte, n), r.Data); err != nil {
			return r, fmt.Errorf("disk record %d: s2: %v: %w", r.Index, err, ErrCorrupt)
		}
	default:
		return r, fmt.Errorf("disk record flags %#x: %w", flags, ErrFrame)
	}
	switch {
	case r.Count == 0 && (r.Index != 0 || len(r.Data) != 0 || r.Off != 0):
		return r, fmt.Errorf("empty disk record with index %d, %d bytes at %d: %w", r.Index, len(r.Data), r.Off, ErrFrame)
	case r.Count > 0 && (r.Index >= r.Count || len(r.Data) == 0):
		return r, fmt.Errorf("disk record %d of %d with %d bytes: %w", r.Index, r.Count, len(r.Data), ErrFrame)
	case r.Off%DiskAlign != 0 || len(r.Data)%DiskAlign != 0:
		return r, fmt.Errorf("disk record %d+%d not %d-aligned: %w", r.Off, len(r.Data), DiskAlign, ErrFrame)
	}
	return r, nil
}
