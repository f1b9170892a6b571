// SPDX-License-Identifier: Apache-2.0

package xen

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// ErrBadState means a state blob is malformed. The blob crosses the network
// (inside a checkpoint), so DecodeState checks every length before use.
var ErrBadState = errors.New("malformed xen state blob")

// stateMagic opens every state blob; the last byte is the format version.
var stateMagic = [8]byte{'R', 'S', 'L', 'X', 'E', 'N', 0, 1}

// Bounds on a decoded blob, far above any real guest, so a corrupt length
// cannot make the backup allocate without limit.
const (
	maxExtents    = 1 << 20
	maxParams     = 256
	maxHVMContext = 16 << 20
)

// HVMParam is one (index, value) entry of the HVM_PARAMS record.
type HVMParam struct {
	Index uint64
	Value uint64
}

// State is what SaveState captures while the guest is paused, beyond its
// memory: everything the backup needs to write a restorable stream.
type State struct {
	XenMajor, XenMinor uint16
	Extents            []Extent   // memory map: dense page i is the i-th frame here
	TSC                TSCInfo    // X86_TSC_INFO
	Params             []HVMParam // HVM_PARAMS, non-zero values only
	HVMContext         []byte     // HVM_CONTEXT, opaque, from xc_domain_hvm_getcontext
}

// Encode serialises s (little-endian, length-prefixed).
func (s *State) Encode() []byte {
	n := len(stateMagic) + 4 + 4 + 16*len(s.Extents) + 24 + 4 + 16*len(s.Params) + 4 + len(s.HVMContext)
	b := make([]byte, 0, n)
	b = append(b, stateMagic[:]...)
	b = binary.LittleEndian.AppendUint16(b, s.XenMajor)
	b = binary.LittleEndian.AppendUint16(b, s.XenMinor)
	b = binary.LittleEndian.AppendUint32(b, uint32(len(s.Extents)))
	for _, e := range s.Extents {
		b = binary.LittleEndian.AppendUint64(b, e.Start)
		b = binary.LittleEndian.AppendUint64(b, e.Count)
	}
	b = binary.LittleEndian.AppendUint32(b, s.TSC.Mode)
	b = binary.LittleEndian.AppendUint32(b, s.TSC.KHz)
	b = binary.LittleEndian.AppendUint64(b, s.TSC.ElapsedNsec)
	b = binary.LittleEndian.AppendUint32(b, s.TSC.Incarnation)
	b = binary.LittleEndian.AppendUint32(b, 0)
	b = binary.LittleEndian.AppendUint32(b, uint32(len(s.Params)))
	for _, p := range s.Params {
		b = binary.LittleEndian.AppendUint64(b, p.Index)
		b = binary.LittleEndian.AppendUint64(b, p.Value)
	}
	b = binary.LittleEndian.AppendUint32(b, uint32(len(s.HVMContext)))
	return append(b, s.HVMContext...)
}

// stateReader consumes a blob, remembering the first short read.
type stateReader struct {
	b   []byte
	err error
}

func (r *stateReader) take(n int) []byte {
	if r.err != nil {
		return nil
	}
	if n < 0 || n > len(r.b) {
		r.err = fmt.Errorf("%w: truncated (need %d bytes, %d left)", ErrBadState, n, len(r.b))
		return nil
	}
	v := r.b[:n]
	r.b = r.b[n:]
	return v
}

func (r *stateReader) u16() uint16 {
	if v := r.take(2); v != nil {
		return binary.LittleEndian.Uint16(v)
	}
	return 0
}

func (r *stateReader) u32() uint32 {
	if v := r.take(4); v != nil {
		return binary.LittleEndian.Uint32(v)
	}
	return 0
}

func (r *stateReader) u64() uint64 {
	if v := r.take(8); v != nil {
		return binary.LittleEndian.Uint64(v)
	}
	return 0
}

// count reads a 32-bit element count, rejecting one above limit or one
// that cannot fit in the remaining bytes at size bytes per element.
func (r *stateReader) count(what string, limit, size int) int {
	n := r.u32()
	if r.err != nil {
		return 0
	}
	if uint64(n) > uint64(limit) || uint64(n)*uint64(size) > uint64(len(r.b)) {
		r.err = fmt.Errorf("%w: %d %s", ErrBadState, n, what)
		return 0
	}
	return int(n)
}

// DecodeState parses a blob made by Encode. It never panics, rejects
// trailing bytes, and checks that the memory map is well formed.
func DecodeState(b []byte) (*State, error) {
	r := &stateReader{b: b}
	if m := r.take(len(stateMagic)); m == nil || string(m) != string(stateMagic[:]) {
		return nil, fmt.Errorf("%w: bad magic or version", ErrBadState)
	}
	s := &State{XenMajor: r.u16(), XenMinor: r.u16()}
	n := r.count("extents", maxExtents, 16)
	s.Extents = make([]Extent, n)
	for i := range s.Extents {
		s.Extents[i] = Extent{Start: r.u64(), Count: r.u64()}
	}
	s.TSC = TSCInfo{Mode: r.u32(), KHz: r.u32(), ElapsedNsec: r.u64(), Incarnation: r.u32()}
	if pad := r.u32(); pad != 0 && r.err == nil {
		return nil, fmt.Errorf("%w: reserved field %#x", ErrBadState, pad)
	}
	n = r.count("hvm params", maxParams, 16)
	s.Params = make([]HVMParam, n)
	for i := range s.Params {
		s.Params[i] = HVMParam{Index: r.u64(), Value: r.u64()}
	}
	n = r.count("bytes of hvm context", maxHVMContext, 1)
	s.HVMContext = append([]byte(nil), r.take(n)...)
	if r.err != nil {
		return nil, r.err
	}
	if len(r.b) != 0 {
		return nil, fmt.Errorf("%w: %d trailing bytes", ErrBadState, len(r.b))
	}
	if _, err := NewLayout(s.Extents); err != nil {
		return nil, fmt.Errorf("%w: memory map: %v", ErrBadState, err)
	}
	return s, nil
}

// fits checks that a replica of memBytes holds exactly the pages of s's
// memory map, before anything is written or started.
func (s *State) fits(memBytes int) error {
	l, err := NewLayout(s.Extents)
	if err != nil {
		return fmt.Errorf("%w: memory map: %v", ErrBadState, err)
	}
	if uint64(memBytes) != l.Pages()*4096 {
		return fmt.Errorf("%w: memory map has %d pages, replica holds %d bytes", ErrBadState, l.Pages(), memBytes)
	}
	return nil
}
