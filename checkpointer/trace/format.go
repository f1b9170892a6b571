// SPDX-License-Identifier: Apache-2.0

package trace

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
)

// PageSize is the page granularity of every trace, the guest page size.
const PageSize = 4096

// FileName is the name of the trace file inside a trace directory.
const FileName = "trace.rtr"

// Version is the file format version this package writes and reads.
const Version = 1

const (
	fileMagic   = "RSLTRACE"
	footerMagic = "RSLTREND"
	headerLen   = 16
	recordLen   = 32
	footerLen   = 24

	kindEpoch = 1
	kindMeta  = 2

	// maxMetaLen bounds the meta record: a mapping table of a few
	// thousand slots is far below it.
	maxMetaLen = 16 << 20
	// MaxPages bounds the flat page space of a trace (64 GiB); the reader
	// rejects any meta claiming more.
	MaxPages = 1 << 24
)

// Package errors. Every error from Open and Next that is due to the file's
// content wraps ErrCorrupt or ErrVersion.
var (
	// ErrCorrupt reports a truncated, corrupted or inconsistent trace file.
	ErrCorrupt = errors.New("corrupt trace")
	// ErrVersion reports a trace written in an unknown format version.
	ErrVersion = errors.New("unsupported trace version")
)

// castagnoli is the CRC-32C table used by every checksum in the file.
var castagnoli = crc32.MakeTable(crc32.Castagnoli)

func crc(b []byte) uint32 { return crc32.Checksum(b, castagnoli) }

// Meta describes a trace. Pages is the final size of the flat page space
// and Epochs the number of epochs recorded.
type Meta struct {
	Name       string    `json:"name"`
	Command    []string  `json:"command,omitempty"`
	IntervalMS int       `json:"interval_ms"`
	Pages      uint64    `json:"pages"`
	Epochs     int       `json:"epochs"`
	PID        int       `json:"pid,omitempty"`
	Freeze     string    `json:"freeze,omitempty"`
	Mappings   []Mapping `json:"mappings,omitempty"`
	// PauseUS is the mean time the process stayed paused per epoch, in
	// microseconds (the recorder's own cost, not part of the workload).
	PauseUS int64 `json:"pause_us,omitempty"`
}

// Mapping is one slot of the flat page space: the address range
// [Start, End) of the process occupies PFNs FirstPFN .. FirstPFN+(End-Start)/PageSize-1.
type Mapping struct {
	Start      uint64 `json:"start"`
	End        uint64 `json:"end"`
	FirstPFN   uint64 `json:"first_pfn"`
	Perms      string `json:"perms"`
	Path       string `json:"path,omitempty"`
	FirstEpoch int    `json:"first_epoch"`
}

// Epoch is one recorded epoch: the pages that changed since the previous
// epoch (every page in epoch 0), with their content.
type Epoch struct {
	Seq  int
	PFNs []uint64 // ascending, unique, < Meta.Pages
	Data []byte   // len(PFNs)*PageSize bytes, page i at i*PageSize
}

// recHeader is a decoded record header.
type recHeader struct {
	kind   uint8
	seq    uint32
	count  uint32
	stored uint32
	raw    uint64
	sum    uint32
}

func (h recHeader) marshal() []byte {
	b := make([]byte, recordLen)
	b[0] = h.kind
	binary.LittleEndian.PutUint32(b[4:], h.seq)
	binary.LittleEndian.PutUint32(b[8:], h.count)
	binary.LittleEndian.PutUint32(b[12:], h.stored)
	binary.LittleEndian.PutUint64(b[16:], h.raw)
	binary.LittleEndian.PutUint32(b[24:], h.sum)
	binary.LittleEndian.PutUint32(b[28:], crc(b[:28]))
	return b
}

func parseRecHeader(b []byte) (recHeader, error) {
	if len(b) != recordLen {
		return recHeader{}, fmt.Errorf("record header: %w", ErrCorrupt)
	}
	if got, want := crc(b[:28]), binary.LittleEndian.Uint32(b[28:]); got != want {
		return recHeader{}, fmt.Errorf("record header checksum %08x, want %08x: %w", got, want, ErrCorrupt)
	}
	if b[1] != 0 || b[2] != 0 || b[3] != 0 {
		return recHeader{}, fmt.Errorf("record header reserved bytes set: %w", ErrCorrupt)
	}
	return recHeader{
		kind:   b[0],
		seq:    binary.LittleEndian.Uint32(b[4:]),
		count:  binary.LittleEndian.Uint32(b[8:]),
		stored: binary.LittleEndian.Uint32(b[12:]),
		raw:    binary.LittleEndian.Uint64(b[16:]),
		sum:    binary.LittleEndian.Uint32(b[24:]),
	}, nil
}

func fileHeader() []byte {
	b := make([]byte, headerLen)
	copy(b, fileMagic)
	binary.LittleEndian.PutUint32(b[8:], Version)
	binary.LittleEndian.PutUint32(b[12:], crc(b[:12]))
	return b
}

func checkFileHeader(b []byte) error {
	if len(b) != headerLen || string(b[:8]) != fileMagic {
		return fmt.Errorf("not a trace file (bad magic): %w", ErrCorrupt)
	}
	if got, want := crc(b[:12]), binary.LittleEndian.Uint32(b[12:]); got != want {
		return fmt.Errorf("file header checksum %08x, want %08x: %w", got, want, ErrCorrupt)
	}
	if v := binary.LittleEndian.Uint32(b[8:]); v != Version {
		return fmt.Errorf("trace version %d, this reader knows %d: %w", v, Version, ErrVersion)
	}
	return nil
}

func footer(metaOff uint64, epochs uint32) []byte {
	b := make([]byte, footerLen)
	copy(b, footerMagic)
	binary.LittleEndian.PutUint64(b[8:], metaOff)
	binary.LittleEndian.PutUint32(b[16:], epochs)
	binary.LittleEndian.PutUint32(b[20:], crc(b[:20]))
	return b
}

func parseFooter(b []byte) (metaOff uint64, epochs uint32, err error) {
	if len(b) != footerLen || string(b[:8]) != footerMagic {
		return 0, 0, fmt.Errorf("no footer (file truncated or still being written): %w", ErrCorrupt)
	}
	if got, want := crc(b[:20]), binary.LittleEndian.Uint32(b[20:]); got != want {
		return 0, 0, fmt.Errorf("footer checksum %08x, want %08x: %w", got, want, ErrCorrupt)
	}
	return binary.LittleEndian.Uint64(b[8:]), binary.LittleEndian.Uint32(b[16:]), nil
}

// appendPFNs encodes pfns (ascending) as the first value then gaps.
func appendPFNs(dst []byte, pfns []uint64) []byte {
	var prev uint64
	for i, p := range pfns {
		if i == 0 {
			dst = binary.AppendUvarint(dst, p)
		} else {
			dst = binary.AppendUvarint(dst, p-prev)
		}
		prev = p
	}
	return dst
}

// parsePFNs decodes count PFNs from b, checking they ascend strictly and
// stay below pages; it returns the bytes consumed.
func parsePFNs(b []byte, count int, pages uint64) ([]uint64, int, error) {
	pfns := make([]uint64, count)
	off := 0
	var prev uint64
	for i := range count {
		v, n := binary.Uvarint(b[off:])
		if n <= 0 {
			return nil, 0, fmt.Errorf("pfn %d: bad varint: %w", i, ErrCorrupt)
		}
		off += n
		p := v
		if i > 0 {
			if v == 0 || v > pages {
				return nil, 0, fmt.Errorf("pfn %d: gap %d: %w", i, v, ErrCorrupt)
			}
			p = prev + v
		}
		if p >= pages {
			return nil, 0, fmt.Errorf("pfn %d = %d beyond %d pages: %w", i, p, pages, ErrCorrupt)
		}
		pfns[i], prev = p, p
	}
	return pfns, off, nil
}
