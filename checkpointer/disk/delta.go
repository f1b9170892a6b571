// SPDX-License-Identifier: Apache-2.0

package disk

import (
	"fmt"

	"github.com/resilire/resilire/checkpointer/wire"
)

// BlockSize is the granularity of write tracking and of every extent that
// travels to the backup: a guest write marks each 4 KiB block it touches,
// and the block is shipped whole.
const BlockSize = 4096

// Extent is a block-aligned byte range of the image.
type Extent struct {
	Off int64
	Len int64
}

// Delta is what one epoch wrote: the extents, ascending and disjoint, and
// their contents at the epoch cut, concatenated in Data (nil until
// Export.Fill for a deferred cut).
type Delta struct {
	Epoch   uint64
	Extents []Extent
	Data    []byte
}

// Bytes is the amount of disk data the delta carries.
func (d *Delta) Bytes() int {
	n := int64(0)
	for _, x := range d.Extents {
		n += x.Len
	}
	return int(n)
}

// Records splits the delta into wire records of at most wire.MaxDiskData
// bytes each. An empty delta is one record with Count 0: a backup with a
// disk always sees that the epoch wrote nothing.
func (d *Delta) Records() []wire.DiskRecord {
	var recs []wire.DiskRecord
	pos := int64(0)
	for _, x := range d.Extents {
		for done := int64(0); done < x.Len; {
			n := min(x.Len-done, wire.MaxDiskData)
			recs = append(recs, wire.DiskRecord{Epoch: d.Epoch, Off: uint64(x.Off + done), Data: d.Data[pos : pos+n]})
			pos += n
			done += n
		}
	}
	if len(recs) == 0 {
		return []wire.DiskRecord{{Epoch: d.Epoch}}
	}
	for i := range recs {
		recs[i].Index, recs[i].Count = uint32(i), uint32(len(recs))
	}
	return recs
}

// checkExtent refuses an extent outside an image of size bytes or not
// block-aligned.
func checkExtent(off uint64, n int, size int64) error {
	if n <= 0 || off%BlockSize != 0 || n%BlockSize != 0 || off > uint64(size) || uint64(n) > uint64(size)-off {
		return fmt.Errorf("extent %d+%d of a %d-byte image: %w", off, n, size, ErrRange)
	}
	return nil
}
