// SPDX-License-Identifier: Apache-2.0

package disk

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
)

// Journal entries: magic u32 | kind u8 | epoch u64 | arg u64 | len u32 |
// crc32c u32 | data. An extent entry has arg = image offset and len bytes
// of data; the commit entry has arg = number of extent entries and, as
// data, the chain: a CRC over the CRCs of those entries, so that a stale
// commit record left behind an unsynced truncation never commits records
// staged over it. The CRC covers the 25 header bytes before it and the
// data.
const (
	jMagic     = 0x4a445352 // "RSDJ"
	jExtent    = 1
	jCommit    = 2
	jHeaderLen = 29
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// jEntry is one staged extent: where its data sits in the journal.
type jEntry struct {
	off, n, pos int64
}

// crashHook, set only by tests, is called at each step of staging and
// applying; a test's child process kills itself there.
var crashHook func(phase string, i int)

func hook(phase string, i int) {
	if crashHook != nil {
		crashHook(phase, i)
	}
}

// chainCRC extends a commit chain with one entry's CRC.
func chainCRC(chain, entry uint32) uint32 {
	return crc32.Update(chain, castagnoli, binary.LittleEndian.AppendUint32(nil, entry))
}

// appendEntry writes one entry at pos and returns the position after it
// and the entry's CRC.
func appendEntry(f *os.File, pos int64, kind byte, epoch, arg uint64, data []byte) (int64, uint32, error) {
	h := binary.LittleEndian.AppendUint32(make([]byte, 0, jHeaderLen+len(data)), jMagic)
	h = append(h, kind)
	h = binary.LittleEndian.AppendUint64(h, epoch)
	h = binary.LittleEndian.AppendUint64(h, arg)
	h = binary.LittleEndian.AppendUint32(h, uint32(len(data)))
	c := crc32.Update(crc32.Checksum(h, castagnoli), castagnoli, data)
	h = binary.LittleEndian.AppendUint32(h, c)
	h = append(h, data...)
	if _, err := f.WriteAt(h, pos); err != nil {
		return pos, 0, fmt.Errorf("write journal: %w", err)
	}
	return pos + int64(len(h)), c, nil
}

// readJournal parses the journal from its start and returns the extent
// entries of a committed epoch, or ok false if it holds no complete,
// intact commit (an interrupted staging: to be discarded).
func readJournal(f *os.File, size int64) (epoch uint64, ents []jEntry, ok bool, err error) {
	fi, err := f.Stat()
	if err != nil {
		return 0, nil, false, fmt.Errorf("stat journal: %w", err)
	}
	end := fi.Size()
	var pos int64
	var buf []byte
	var chain uint32
	for pos+jHeaderLen <= end {
		var h [jHeaderLen]byte
		if _, err := f.ReadAt(h[:], pos); err != nil {
			return 0, nil, false, fmt.Errorf("read journal: %w", err)
		}
		kind, e := h[4], binary.LittleEndian.Uint64(h[5:])
		arg, n := binary.LittleEndian.Uint64(h[13:]), int64(binary.LittleEndian.Uint32(h[21:]))
		if binary.LittleEndian.Uint32(h[:]) != jMagic || pos+jHeaderLen+n > end || n > MaxRequest {
			return 0, nil, false, nil
		}
		if int64(cap(buf)) < n {
			buf = make([]byte, n)
		}
		buf = buf[:n]
		if _, err := f.ReadAt(buf, pos+jHeaderLen); err != nil {
			return 0, nil, false, fmt.Errorf("read journal: %w", err)
		}
		c := binary.LittleEndian.Uint32(h[25:])
		if crc32.Update(crc32.Checksum(h[:25], castagnoli), castagnoli, buf) != c {
			return 0, nil, false, nil
		}
		if len(ents) > 0 && e != epoch {
			return 0, nil, false, nil
		}
		epoch = e
		switch kind {
		case jExtent:
			if checkExtent(arg, int(n), size) != nil {
				return 0, nil, false, nil
			}
			ents = append(ents, jEntry{off: int64(arg), n: n, pos: pos + jHeaderLen})
			chain = chainCRC(chain, c)
		case jCommit:
			ok := arg == uint64(len(ents)) && n == 4 && binary.LittleEndian.Uint32(buf) == chain
			return epoch, ents, ok, nil
		default:
			return 0, nil, false, nil
		}
		pos += jHeaderLen + n
	}
	return 0, nil, false, nil
}

// applyEntries copies staged extents from the journal into the image and
// makes the image durable.
func applyEntries(img, jr *os.File, ents []jEntry) error {
	var buf []byte
	for i, en := range ents {
		if int64(cap(buf)) < en.n {
			buf = make([]byte, en.n)
		}
		buf = buf[:en.n]
		if _, err := jr.ReadAt(buf, en.pos); err != nil && !errors.Is(err, io.EOF) {
			return fmt.Errorf("read journal extent: %w", err)
		}
		if _, err := img.WriteAt(buf, en.off); err != nil {
			return fmt.Errorf("write image extent %d+%d: %w", en.off, en.n, err)
		}
		hook("apply", i)
	}
	if err := fdatasync(img); err != nil {
		return fmt.Errorf("sync image: %w", err)
	}
	return nil
}
