// SPDX-License-Identifier: Apache-2.0

package wire

import (
	"encoding/binary"
	"fmt"
)

// The scrub compares a two-level hash tree of guest memory: one 64-bit
// hash per page (leaves), one hash per chunk of ChunkPages leaves.
//
//	SCRUB        (primary -> backup): epoch u64 | chunkPages u32 | n u32 | n x chunk hash u64
//	SCRUB_REPORT (backup -> primary): epoch u64 | chunkPages u32 | diverged u32 | n u32 |
//	                                  n x (chunk index u32 | chunkPages x leaf u64)
//
// The report carries the backup's leaves of (at most MaxScrubPayload
// worth of) the chunks that differ, for the primary to name the pages.
const (
	// MaxScrubPayload bounds SCRUB and SCRUB_REPORT frames.
	MaxScrubPayload = 256 << 10
	scrubFixedLen   = 16
	reportFixedLen  = 20
	// MaxScrubChunkPages bounds a chunk (a report must hold one).
	MaxScrubChunkPages = (MaxScrubPayload - reportFixedLen - 4) / 8
)

// ScrubMsg asks the backup to compare its replica, as committed at Epoch,
// with the primary's chunk hashes of that epoch.
type ScrubMsg struct {
	Epoch      uint64
	ChunkPages uint32
	Chunks     []uint64
}

// Marshal encodes the message; it must fit MaxScrubPayload.
func (m ScrubMsg) Marshal() ([]byte, error) {
	if scrubFixedLen+8*len(m.Chunks) > MaxScrubPayload || m.ChunkPages == 0 || m.ChunkPages > MaxScrubChunkPages {
		return nil, fmt.Errorf("scrub: %d chunks of %d pages: %w", len(m.Chunks), m.ChunkPages, ErrFrame)
	}
	b := binary.LittleEndian.AppendUint64(make([]byte, 0, scrubFixedLen+8*len(m.Chunks)), m.Epoch)
	b = binary.LittleEndian.AppendUint32(b, m.ChunkPages)
	b = binary.LittleEndian.AppendUint32(b, uint32(len(m.Chunks)))
	for _, c := range m.Chunks {
		b = binary.LittleEndian.AppendUint64(b, c)
	}
	return b, nil
}

// ParseScrub decodes a SCRUB payload.
func ParseScrub(p []byte) (ScrubMsg, error) {
	var m ScrubMsg
	if len(p) < scrubFixedLen {
		return m, fmt.Errorf("scrub: %d bytes: %w", len(p), ErrFrame)
	}
	m.Epoch = binary.LittleEndian.Uint64(p)
	m.ChunkPages = binary.LittleEndian.Uint32(p[8:])
	n := binary.LittleEndian.Uint32(p[12:])
	if m.ChunkPages == 0 || m.ChunkPages > MaxScrubChunkPages || uint64(len(p)) != scrubFixedLen+8*uint64(n) {
		return m, fmt.Errorf("scrub: %d chunks of %d pages in %d bytes: %w", n, m.ChunkPages, len(p), ErrFrame)
	}
	m.Chunks = make([]uint64, n)
	for i := range m.Chunks {
		m.Chunks[i] = binary.LittleEndian.Uint64(p[scrubFixedLen+8*i:])
	}
	return m, nil
}

// ScrubChunk is one diverged chunk: its index and the backup's leaves.
type ScrubChunk struct {
	Index  uint32
	Leaves []uint64
}

// ScrubReportMsg answers a SCRUB: how many chunks diverged, and the
// backup's leaves of the first of them.
type ScrubReportMsg struct {
	Epoch      uint64
	ChunkPages uint32
	Diverged   uint32 // chunks that differ, >= len(Chunks)
	Chunks     []ScrubChunk
}

// ReportCapacity is how many chunks of chunkPages leaves a report holds.
func ReportCapacity(chunkPages uint32) int {
	return (MaxScrubPayload - reportFixedLen) / (4 + 8*int(chunkPages))
}

// Marshal encodes the report; every chunk must hold ChunkPages leaves.
func (r ScrubReportMsg) Marshal() ([]byte, error) {
	if r.ChunkPages == 0 || r.ChunkPages > MaxScrubChunkPages || len(r.Chunks) > ReportCapacity(r.ChunkPages) || int(r.Diverged) < len(r.Chunks) {
		return nil, fmt.Errorf("scrub report: %d of %d chunks of %d pages: %w", len(r.Chunks), r.Diverged, r.ChunkPages, ErrFrame)
	}
	b := binary.LittleEndian.AppendUint64(nil, r.Epoch)
	b = binary.LittleEndian.AppendUint32(b, r.ChunkPages)
	b = binary.LittleEndian.AppendUint32(b, r.Diverged)
	b = binary.LittleEndian.AppendUint32(b, uint32(len(r.Chunks)))
	for _, c := range r.Chunks {
		if len(c.Leaves) != int(r.ChunkPages) {
			return nil, fmt.Errorf("scrub report: chunk %d has %d leaves: %w", c.Index, len(c.Leaves), ErrFrame)
		}
		b = binary.LittleEndian.AppendUint32(b, c.Index)
		for _, l := range c.Leaves {
			b = binary.LittleEndian.AppendUint64(b, l)
		}
	}
	return b, nil
}

// ParseScrubReport decodes a SCRUB_REPORT payload.
func ParseScrubReport(p []byte) (ScrubReportMsg, error) {
	var r ScrubReportMsg
	if len(p) < reportFixedLen {
		return r, fmt.Errorf("scrub report: %d bytes: %w", len(p), ErrFrame)
	}
	r.Epoch = binary.LittleEndian.Uint64(p)
	r.ChunkPages = binary.LittleEndian.Uint32(p[8:])
	r.Diverged = binary.LittleEndian.Uint32(p[12:])
	n := binary.LittleEndian.Uint32(p[16:])
	if r.ChunkPages == 0 || r.ChunkPages > MaxScrubChunkPages || n > r.Diverged ||
		uint64(len(p)) != reportFixedLen+uint64(n)*(4+8*uint64(r.ChunkPages)) {
		return r, fmt.Errorf("scrub report: %d chunks of %d pages in %d bytes: %w", n, r.ChunkPages, len(p), ErrFrame)
	}
	r.Chunks = make([]ScrubChunk, n)
	off := reportFixedLen
	for i := range r.Chunks {
		c := ScrubChunk{Index: binary.LittleEndian.Uint32(p[off:]), Leaves: make([]uint64, r.ChunkPages)}
		off += 4
		for j := range c.Leaves {
			c.Leaves[j] = binary.LittleEndian.Uint64(p[off:])
			off += 8
		}
		r.Chunks[i] = c
	}
	return r, nil
}
