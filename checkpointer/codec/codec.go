// SPDX-License-Identifier: Apache-2.0

package codec

import (
	"io"

	"github.com/resilire/resilire/checkpointer/fgbi"
)

// PageSize is the guest page size the replication works in. Every driver
// reports memory in these units (x86 4 KiB frames).
const PageSize = fgbi.PageSize

// EncodeStats describes one encoded checkpoint.
type EncodeStats struct {
	// Pages is the number of pages the checkpoint carried.
	Pages int
	// WireBytes is the encoded size of the checkpoint.
	WireBytes int64
	// DiskWireBytes is the size of the checkpoint's DISK records (set by
	// the engine, not the codec).
	DiskWireBytes int64
}

// Encoder turns the pages copied during a pause into one self-delimiting
// checkpoint. It may remember what the backup holds; Reset forgets it.
type Encoder interface {
	// Encode writes one complete checkpoint for epoch to w. pfns are
	// ascending and unique; data holds len(pfns)*PageSize bytes; state may
	// be nil.
	Encode(w io.Writer, epoch uint64, pfns []uint64, data, state []byte) (EncodeStats, error)
	// Reset forgets what the backup holds: the next Encode must carry every
	// page the backup needs (full resynchronisation).
	Reset()
}

// Decoder reads and verifies one whole checkpoint without touching the
// replica; only the returned Staged writes to it.
type Decoder interface {
	// Decode reads exactly one checkpoint from r. replica is only read.
	Decode(r io.Reader, replica []byte) (Staged, error)
}

// Staged is a verified checkpoint waiting to be applied.
type Staged interface {
	// Epoch is the epoch the checkpoint was taken at.
	Epoch() uint64
	// Apply writes the checkpoint into replica. It cannot fail.
	Apply(replica []byte)
	// State is the full device state of the checkpoint, nil if none.
	State() []byte
	// Extents calls fn for every replica range Apply will write, before
	// Apply (a group member's backup saves those bytes first, to be able
	// to undo the checkpoint).
	Extents(fn func(off, n uint64))
}

// Codec builds the encoder and decoder pair for a guest of memSize bytes.
// The backup makes a fresh Decoder for every session.
type Codec interface {
	// Name identifies the codec in logs and in the session hello.
	Name() string
	// NewEncoder returns an encoder for a guest of memSize bytes.
	NewEncoder(memSize uint64) (Encoder, error)
	// NewDecoder returns a decoder for a guest of memSize bytes.
	NewDecoder(memSize uint64) (Decoder, error)
}
