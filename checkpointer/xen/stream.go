// SPDX-License-Identifier: Apache-2.0

package xen

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"

	"github.com/resilire/resilire/checkpointer"
)

// Record types and constants of the libxc migration stream v2
// (docs/specs/libxc-migration-stream.pandoc in the Xen tree).
const (
	ihdrMarker  = 0xffffffffffffffff
	ihdrID      = 0x58454e46 // "XENF"
	ihdrVersion = 2
	dhdrHVM     = 2
	pageShift   = 12

	recEnd        = 0x00
	recPageData   = 0x01
	recTSCInfo    = 0x08
	recHVMContext = 0x09
	recHVMParams  = 0x0a

	// pagesPerRecord is how many frames one PAGE_DATA record carries;
	// libxc's saver batches the same number.
	pagesPerRecord = 1024
)

// streamWriter writes records: a 32-bit type, a 32-bit length and the body
// padded with zeros to a multiple of 8 bytes.
type streamWriter struct {
	w   *bufio.Writer
	err error
	hdr [8]byte
}

func (s *streamWriter) write(b []byte) {
	if s.err == nil {
		_, s.err = s.w.Write(b)
	}
}

// record writes one record whose body is the concatenation of parts.
func (s *streamWriter) record(typ uint32, parts ...[]byte) {
	n := 0
	for _, p := range parts {
		n += len(p)
	}
	binary.LittleEndian.PutUint32(s.hdr[0:], typ)
	binary.LittleEndian.PutUint32(s.hdr[4:], uint32(n))
	s.write(s.hdr[:])
	for _, p := range parts {
		s.write(p)
	}
	var pad [8]byte
	s.write(pad[:(8-n%8)%8])
}

// WriteLibxcStream writes a complete libxc migration stream v2 for an HVM
// (PVH) guest: image header, domain header, PAGE_DATA for every populated
// frame of st's memory map taken from mem (dense, as the replica holds it),
// X86_TSC_INFO, HVM_CONTEXT, HVM_PARAMS and END — the records and order of
// libxc's own HVM save. Version 2 carries no CPUID/MSR policy records, so
// the restoring Xen applies its default policy for the guest.
func WriteLibxcStream(w io.Writer, mem []byte, st *State) error {
	layout, err := NewLayout(st.Extents)
	if err != nil {
		return fmt.Errorf("write libxc stream: memory map: %w", err)
	}
	if uint64(len(mem)) != layout.Pages()*checkpointer.PageSize {
		return fmt.Errorf("write libxc stream: replica is %d bytes, memory map has %d pages", len(mem), layout.Pages())
	}
	if len(st.HVMContext) == 0 {
		return fmt.Errorf("write libxc stream: empty hvm context")
	}
	s := &streamWriter{w: bufio.NewWriterSize(w, 1<<20)}

	// Image header: network byte order.
	var ihdr [24]byte
	binary.BigEndian.PutUint64(ihdr[0:], ihdrMarker)
	binary.BigEndian.PutUint32(ihdr[8:], ihdrID)
	binary.BigEndian.PutUint32(ihdr[12:], ihdrVersion)
	s.write(ihdr[:]) // options (little-endian stream), reserved: zero
	// Domain header: native (little-endian) from here on.
	var dhdr [16]byte
	binary.LittleEndian.PutUint32(dhdr[0:], dhdrHVM)
	binary.LittleEndian.PutUint16(dhdr[4:], pageShift)
	binary.LittleEndian.PutUint32(dhdr[8:], uint32(st.XenMajor))
	binary.LittleEndian.PutUint32(dhdr[12:], uint32(st.XenMinor))
	s.write(dhdr[:])

	writePageData(s, layout, mem)

	var tsc [24]byte
	binary.LittleEndian.PutUint32(tsc[0:], st.TSC.Mode)
	binary.LittleEndian.PutUint32(tsc[4:], st.TSC.KHz)
	binary.LittleEndian.PutUint64(tsc[8:], st.TSC.ElapsedNsec)
	binary.LittleEndian.PutUint32(tsc[16:], st.TSC.Incarnation)
	s.record(recTSCInfo, tsc[:])
	s.record(recHVMContext, st.HVMContext)
	if len(st.Params) > 0 {
		body := make([]byte, 8, 8+16*len(st.Params))
		binary.LittleEndian.PutUint32(body[0:], uint32(len(st.Params)))
		for _, p := range st.Params {
			body = binary.LittleEndian.AppendUint64(body, p.Index)
			body = binary.LittleEndian.AppendUint64(body, p.Value)
		}
		s.record(recHVMParams, body)
	}
	s.record(recEnd)
	if s.err == nil {
		s.err = s.w.Flush()
	}
	if s.err != nil {
		return fmt.Errorf("write libxc stream: %w", s.err)
	}
	return nil
}

// writePageData emits PAGE_DATA records of up to pagesPerRecord frames:
// count, reserved, one 64-bit pfn|type word per frame (type NOTAB = 0), then
// the frames' data in the same order.
func writePageData(s *streamWriter, layout *Layout, mem []byte) {
	head := make([]byte, 8+8*pagesPerRecord)
	var dense uint64
	for _, e := range layout.Extents() {
		for off := uint64(0); off < e.Count; {
			n := min(e.Count-off, pagesPerRecord)
			h := head[:8+8*n]
			binary.LittleEndian.PutUint32(h[0:], uint32(n))
			binary.LittleEndian.PutUint32(h[4:], 0)
			for i := uint64(0); i < n; i++ {
				binary.LittleEndian.PutUint64(h[8+8*i:], e.Start+off+i)
			}
			first := (dense + off) * checkpointer.PageSize
			s.record(recPageData, h, mem[first:first+n*checkpointer.PageSize])
			off += n
		}
		dense += e.Count
	}
}
