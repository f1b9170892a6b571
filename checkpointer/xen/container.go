// SPDX-License-Identifier: Apache-2.0

package xen

import (
	"encoding/binary"
	"fmt"
	"io"
)

// libxl migration stream v2 (docs/specs/libxl-migration-stream.pandoc).
const (
	libxlIdent        = 0x4c6962786c466d74 // "LibxlFmt"
	libxlVersion      = 2
	libxlRecEnd       = 0x00
	libxlRecLibxcCtx  = 0x01
	xlByteOrder       = 0x01020304
	xlFlagJSON        = 1 << 0 // XL_MANDATORY_FLAG_JSON: optional data holds the JSON config
	xlFlagStreamV2    = 1 << 1 // XL_MANDATORY_FLAG_STREAMv2: a libxl v2 stream follows
	xlSaveMagicLength = 32
)

// xlMagic opens an xl save file (tools/xl/xl.h savefileheader_magic).
const xlMagic = "Xen saved domain, xl format\n \x00 \r"

// WriteLibxlStream writes the libxl container libxl's restore reads: the
// "LibxlFmt" header, a LIBXC_CONTEXT record followed by the libxc stream,
// and END. A PVH guest has no device model, so there is no EMULATOR_*
// record.
func WriteLibxlStream(w io.Writer, mem []byte, st *State) error {
	var hdr [16]byte
	binary.BigEndian.PutUint64(hdr[0:], libxlIdent)
	binary.BigEndian.PutUint32(hdr[8:], libxlVersion)
	// options: little endian, not legacy-converted.
	var ctx [8]byte
	binary.LittleEndian.PutUint32(ctx[0:], libxlRecLibxcCtx)
	if _, err := w.Write(append(hdr[:], ctx[:]...)); err != nil {
		return fmt.Errorf("write libxl stream: %w", err)
	}
	if err := WriteLibxcStream(w, mem, st); err != nil {
		return err
	}
	var end [8]byte // type END, length 0
	if _, err := w.Write(end[:]); err != nil {
		return fmt.Errorf("write libxl stream: %w", err)
	}
	return nil
}

// WriteXLImage writes an xl save file — what `xl save` writes and `xl
// restore` reads: the xl header, optional data holding the domain config
// (libxl JSON, as `xl save` stores it; may be empty, and then `xl restore`
// must be given a config file), and the libxl stream.
func WriteXLImage(w io.Writer, mem []byte, st *State, configJSON []byte) error {
	var cfg []byte
	flags := uint32(xlFlagStreamV2)
	if len(configJSON) > 0 {
		cfg = append(append(cfg, configJSON...), 0) // xl stores the NUL too
		flags |= xlFlagJSON
	}
	hdr := make([]byte, 0, xlSaveMagicLength+16+4+len(cfg))
	hdr = append(hdr, xlMagic...)
	hdr = binary.LittleEndian.AppendUint32(hdr, xlByteOrder)
	hdr = binary.LittleEndian.AppendUint32(hdr, flags)
	hdr = binary.LittleEndian.AppendUint32(hdr, 0) // optional flags
	hdr = binary.LittleEndian.AppendUint32(hdr, uint32(4+len(cfg)))
	hdr = binary.LittleEndian.AppendUint32(hdr, uint32(len(cfg)))
	hdr = append(hdr, cfg...)
	if _, err := w.Write(hdr); err != nil {
		return fmt.Errorf("write xl header: %w", err)
	}
	return WriteLibxlStream(w, mem, st)
}
