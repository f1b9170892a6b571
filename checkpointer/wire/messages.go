// SPDX-License-Identifier: Apache-2.0

package wire

import (
	"encoding/binary"
	"fmt"
)

// Control message payloads. All integers are little endian; every parser
// checks the exact length first and never panics (FuzzFrames).
const (
	helloMagic = 0x524c5352 // "RSLR"
	// Version is the protocol version both ends must speak.
	Version = 2
	// SessionIDLen is the length of a session id.
	SessionIDLen = 16
	// MaxNameLen bounds a VM or codec name in the hello.
	MaxNameLen = 255
)

// HelloMsg opens a session: who the primary protects and how it encodes.
type HelloMsg struct {
	MemSize uint64
	// DiskSize is the size of the replicated disk image, 0 without one
	// (protocol version 2).
	DiskSize uint64
	Session  [SessionIDLen]byte
	VM       string
	Codec    string
}

// CheckName refuses a VM or codec name the hello cannot carry.
func CheckName(name string) error {
	if len(name) > MaxNameLen {
		return fmt.Errorf("%q (%d bytes): %w", name[:32]+"...", len(name), ErrNameTooLong)
	}
	return nil
}

// Marshal encodes the hello; names over MaxNameLen are refused, never cut.
func (h HelloMsg) Marshal() ([]byte, error) {
	if err := CheckName(h.VM); err != nil {
		return nil, fmt.Errorf("vm name %w", err)
	}
	if err := CheckName(h.Codec); err != nil {
		return nil, fmt.Errorf("codec name %w", err)
	}
	b := binary.LittleEndian.AppendUint32(nil, helloMagic)
	b = binary.LittleEndian.AppendUint16(b, Version)
	b = binary.LittleEndian.AppendUint64(b, h.MemSize)
	b = binary.LittleEndian.AppendUint64(b, h.DiskSize)
	b = append(b, h.Session[:]...)
	b = append(b, byte(len(h.VM)), byte(len(h.Codec)))
	b = append(b, h.VM...)
	return append(b, h.Codec...), nil
}

// ParseHello decodes a HELLO payload.
func ParseHello(p []byte) (HelloMsg, error) {
	var h HelloMsg
	const fixed = 4 + 2 + 8 + 8 + SessionIDLen + 2
	if len(p) < fixed {
		return h, fmt.Errorf("hello: %d bytes: %w", len(p), ErrFrame)
	}
	if binary.LittleEndian.Uint32(p) != helloMagic {
		return h, fmt.Errorf("hello magic: %w", ErrFrame)
	}
	if v := binary.LittleEndian.Uint16(p[4:]); v != Version {
		return h, fmt.Errorf("hello protocol version %d, want %d: %w", v, Version, ErrSession)
	}
	h.MemSize = binary.LittleEndian.Uint64(p[6:])
	h.DiskSize = binary.LittleEndian.Uint64(p[14:])
	copy(h.Session[:], p[22:22+SessionIDLen])
	nv, nc := int(p[fixed-2]), int(p[fixed-1])
	if len(p) != fixed+nv+nc {
		return h, fmt.Errorf("hello names: %d bytes for %d+%d: %w", len(p)-fixed, nv, nc, ErrFrame)
	}
	h.VM = string(p[fixed : fixed+nv])
	h.Codec = string(p[fixed+nv:])
	return h, nil
}

// HelloAckMsg answers a hello: what the backup already holds.
type HelloAckMsg struct {
	Session   [SessionIDLen]byte
	Committed uint64 // last committed consistent epoch, 0 if none
}

// Marshal encodes the answer.
func (a HelloAckMsg) Marshal() []byte {
	b := binary.LittleEndian.AppendUint16(nil, Version)
	b = append(b, a.Session[:]...)
	return binary.LittleEndian.AppendUint64(b, a.Committed)
}

// ParseHelloAck decodes a HELLO_ACK payload.
func ParseHelloAck(p []byte) (HelloAckMsg, error) {
	var a HelloAckMsg
	if len(p) != 2+SessionIDLen+8 {
		return a, fmt.Errorf("hello ack: %d bytes: %w", len(p), ErrFrame)
	}
	if v := binary.LittleEndian.Uint16(p); v != Version {
		return a, fmt.Errorf("hello ack protocol version %d: %w", v, ErrSession)
	}
	copy(a.Session[:], p[2:])
	a.Committed = binary.LittleEndian.Uint64(p[2+SessionIDLen:])
	return a, nil
}

// Kind says what a checkpoint holds.
type Kind byte

// Checkpoint kinds carried in BEGIN.
const (
	// Precopy: pages copied while the guest ran; not a consistent state.
	Precopy Kind = 1
	// Consistent: a checkpoint taken with the guest paused.
	Consistent Kind = 2
)

// CheckpointMsg is the payload of BEGIN, END and ACK: the per-session
// sequence number (strictly increasing), the epoch, and the kind.
type CheckpointMsg struct {
	Seq   uint64
	Epoch uint64
	Kind  Kind
}

// Marshal encodes the message.
func (m CheckpointMsg) Marshal() []byte {
	b := binary.LittleEndian.AppendUint64(nil, m.Seq)
	b = binary.LittleEndian.AppendUint64(b, m.Epoch)
	return append(b, byte(m.Kind))
}

// ParseCheckpoint decodes a BEGIN, END or ACK payload.
func ParseCheckpoint(p []byte) (CheckpointMsg, error) {
	if len(p) != 17 {
		return CheckpointMsg{}, fmt.Errorf("checkpoint message: %d bytes: %w", len(p), ErrFrame)
	}
	m := CheckpointMsg{Seq: binary.LittleEndian.Uint64(p), Epoch: binary.LittleEndian.Uint64(p[8:]), Kind: Kind(p[16])}
	if m.Kind != Precopy && m.Kind != Consistent {
		return m, fmt.Errorf("checkpoint kind %d: %w", m.Kind, ErrFrame)
	}
	return m, nil
}
