// SPDX-License-Identifier: Apache-2.0

package checkpointer

import (
	"encoding/binary"
	"fmt"
)

// Control message payloads. All integers are little endian; every parser
// checks the exact length first and never panics (FuzzFrames).

const (
	helloMagic   = 0x524c5352 // "RSLR"
	protoVersion = 1
	sessionIDLen = 16
	maxNameLen   = 255
)

// hello opens a session: who the primary protects and how it encodes.
type hello struct {
	MemSize uint64
	Session [sessionIDLen]byte
	VM      string
	Codec   string
}

func (h hello) marshal() []byte {
	b := binary.LittleEndian.AppendUint32(nil, helloMagic)
	b = binary.LittleEndian.AppendUint16(b, protoVersion)
	b = binary.LittleEndian.AppendUint64(b, h.MemSize)
	b = append(b, h.Session[:]...)
	b = append(b, byte(len(h.VM)), byte(len(h.Codec)))
	b = append(b, h.VM...)
	return append(b, h.Codec...)
}

func parseHello(p []byte) (hello, error) {
	var h hello
	const fixed = 4 + 2 + 8 + sessionIDLen + 2
	if len(p) < fixed {
		return h, fmt.Errorf("hello: %d bytes: %w", len(p), ErrFrame)
	}
	if binary.LittleEndian.Uint32(p) != helloMagic {
		return h, fmt.Errorf("hello magic: %w", ErrFrame)
	}
	if v := binary.LittleEndian.Uint16(p[4:]); v != protoVersion {
		return h, fmt.Errorf("hello protocol version %d, want %d: %w", v, protoVersion, ErrSession)
	}
	h.MemSize = binary.LittleEndian.Uint64(p[6:])
	copy(h.Session[:], p[14:14+sessionIDLen])
	nv, nc := int(p[fixed-2]), int(p[fixed-1])
	if len(p) != fixed+nv+nc {
		return h, fmt.Errorf("hello names: %d bytes for %d+%d: %w", len(p)-fixed, nv, nc, ErrFrame)
	}
	h.VM = string(p[fixed : fixed+nv])
	h.Codec = string(p[fixed+nv:])
	return h, nil
}

// helloAck answers a hello: what the backup already holds.
type helloAck struct {
	Session   [sessionIDLen]byte
	Committed uint64 // last committed consistent epoch, 0 if none
}

func (a helloAck) marshal() []byte {
	b := binary.LittleEndian.AppendUint16(nil, protoVersion)
	b = append(b, a.Session[:]...)
	return binary.LittleEndian.AppendUint64(b, a.Committed)
}

func parseHelloAck(p []byte) (helloAck, error) {
	var a helloAck
	if len(p) != 2+sessionIDLen+8 {
		return a, fmt.Errorf("hello ack: %d bytes: %w", len(p), ErrFrame)
	}
	if v := binary.LittleEndian.Uint16(p); v != protoVersion {
		return a, fmt.Errorf("hello ack protocol version %d: %w", v, ErrSession)
	}
	copy(a.Session[:], p[2:])
	a.Committed = binary.LittleEndian.Uint64(p[2+sessionIDLen:])
	return a, nil
}

// Checkpoint kinds carried in BEGIN.
const (
	// kindPrecopy: pages copied while the guest ran; not a consistent state.
	kindPrecopy byte = 1
	// kindEpoch: a consistent checkpoint taken with the guest paused.
	kindEpoch byte = 2
)

// ckptMsg is the payload of BEGIN, END and ACK: the per-session sequence
// number (strictly increasing), the epoch, and the kind.
type ckptMsg struct {
	Seq   uint64
	Epoch uint64
	Kind  byte
}

func (m ckptMsg) marshal() []byte {
	b := binary.LittleEndian.AppendUint64(nil, m.Seq)
	b = binary.LittleEndian.AppendUint64(b, m.Epoch)
	return append(b, m.Kind)
}

func parseCkptMsg(p []byte) (ckptMsg, error) {
	if len(p) != 17 {
		return ckptMsg{}, fmt.Errorf("checkpoint message: %d bytes: %w", len(p), ErrFrame)
	}
	m := ckptMsg{Seq: binary.LittleEndian.Uint64(p), Epoch: binary.LittleEndian.Uint64(p[8:]), Kind: p[16]}
	if m.Kind != kindPrecopy && m.Kind != kindEpoch {
		return m, fmt.Errorf("checkpoint kind %d: %w", m.Kind, ErrFrame)
	}
	return m, nil
}
