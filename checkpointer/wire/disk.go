// SPDX-License-Identifier: Apache-2.0

package wire

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"
)

// DISK payload: epoch u64 | index u32 | count u32 | offset u64 |
// crc32c u32 | data. The CRC (Castagnoli) covers the 24 header bytes
// before it and the data. The records of one checkpoint are numbered
// 0..count-1 and sent after its memory DATA, before END; an epoch that
// wrote nothing sends one record with count 0 and no data.
const (
	diskFixedLen = 28
	// MaxDiskData bounds the disk data of one record.
	MaxDiskData = 256 << 10
	// MaxDiskPayload bounds a DISK frame.
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

// Marshal appends the DISK payload of r to dst.
func (r DiskRecord) Marshal(dst []byte) []byte {
	start := len(dst)
	dst = binary.LittleEndian.AppendUint64(dst, r.Epoch)
	dst = binary.LittleEndian.AppendUint32(dst, r.Index)
	dst = binary.LittleEndian.AppendUint32(dst, r.Count)
	dst = binary.LittleEndian.AppendUint64(dst, r.Off)
	c := crc32.Update(crc32.Checksum(dst[start:], castagnoli), castagnoli, r.Data)
	dst = binary.LittleEndian.AppendUint32(dst, c)
	return append(dst, r.Data...)
}

// ParseDisk decodes and verifies a DISK payload; Data aliases p. A bad
// length or numbering is ErrFrame, a checksum mismatch ErrCorrupt.
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
	want := binary.LittleEndian.Uint32(p[24:])
	if c := crc32.Update(crc32.Checksum(p[:24], castagnoli), castagnoli, r.Data); c != want {
		return r, fmt.Errorf("disk record %d of epoch %d: crc %#x, want %#x: %w", r.Index, r.Epoch, c, want, ErrCorrupt)
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
