// SPDX-License-Identifier: Apache-2.0

package baseline

import (
	"encoding/binary"
	"fmt"
)

// Xen is (b), Xen's checkpoint compression (tools/libxc xc_compression.c,
// as described in research §4): an LRU of earlier page copies; a cached page
// is compared in 4-byte words and sent as runs, each with a 1-byte header
// (bit 7: 1 = run of changed words that follow, 0 = words to skip; bits 0-6:
// 1..127 words). A page equal to its copy costs the EMPTY marker; a page not
// cached, or whose runs would exceed a page, is FULL: marker + 4096 bytes.
type Xen struct {
	lru *lru
}

// Xen page markers (after the 8-byte page number).
const (
	xenEmpty = 0
	xenDelta = 1
	xenFull  = 2
)

// NewXen returns (b) with Xen's 8192-page cache.
func NewXen() *Xen { return &Xen{lru: newLRU(8192)} }

// Name implements Codec.
func (*Xen) Name() string { return "(b) xen xor words, lru 8192" }

// Encode implements Codec.
func (x *Xen) Encode(dst []byte, pfns []uint64, data []byte) ([]byte, error) {
	for i, p := range pfns {
		cur := data[i*PageSize : (i+1)*PageSize]
		dst = binary.LittleEndian.AppendUint64(dst, p)
		old := x.lru.get(p)
		if old == nil {
			dst = append(append(dst, xenFull), cur...)
			copy(x.lru.put(p), cur)
			continue
		}
		mark := len(dst)
		dst = append(dst, xenDelta)
		var ok bool
		if dst, ok = xenRuns(dst, old, cur); !ok {
			dst = append(append(dst[:mark], xenFull), cur...)
		} else if !changed(old, cur) {
			dst = append(dst[:mark], xenEmpty)
		}
		copy(old, cur)
	}
	return dst, nil
}

func changed(a, b []byte) bool { return string(a) != string(b) }

// xenRuns appends the word runs of cur against old; ok is false when they
// would be larger than a page.
func xenRuns(dst, old, cur []byte) ([]byte, bool) {
	const words = PageSize / 4
	start := len(dst)
	w := 0
	for w < words {
		same := binary.LittleEndian.Uint32(old[w*4:]) == binary.LittleEndian.Uint32(cur[w*4:])
		n := 1
		for w+n < words && n < 127 && (binary.LittleEndian.Uint32(old[(w+n)*4:]) == binary.LittleEndian.Uint32(cur[(w+n)*4:])) == same {
			n++
		}
		if same {
			dst = append(dst, byte(n))
		} else {
			dst = append(dst, 0x80|byte(n))
			dst = append(dst, cur[w*4:(w+n)*4]...)
		}
		w += n
		if len(dst)-start >= PageSize {
			return dst[:start], false
		}
	}
	return dst, true
}

// Decode implements Codec.
func (x *Xen) Decode(src []byte, replica []byte) error {
	for len(src) > 0 {
		if len(src) < 9 {
			return fmt.Errorf("xen page header: %w", ErrCorrupt)
		}
		off, err := pageOff(binary.LittleEndian.Uint64(src), replica)
		if err != nil {
			return err
		}
		page := replica[off : off+PageSize]
		kind := src[8]
		src = src[9:]
		switch kind {
		case xenEmpty:
		case xenFull:
			if len(src) < PageSize {
				return fmt.Errorf("xen full page: %w", ErrCorrupt)
			}
			copy(page, src[:PageSize])
			src = src[PageSize:]
		case xenDelta:
			if src, err = xenApply(page, src); err != nil {
				return err
			}
		default:
			return fmt.Errorf("xen marker %d: %w", kind, ErrCorrupt)
		}
	}
	return nil
}

func xenApply(page, src []byte) ([]byte, error) {
	w := 0
	for w < PageSize/4 {
		if len(src) == 0 {
			return nil, fmt.Errorf("xen runs end at word %d: %w", w, ErrCorrupt)
		}
		h := src[0]
		n := int(h & 0x7f)
		src = src[1:]
		if n == 0 || w+n > PageSize/4 {
			return nil, fmt.Errorf("xen run of %d words at %d: %w", n, w, ErrCorrupt)
		}
		if h&0x80 != 0 {
			if len(src) < n*4 {
				return nil, fmt.Errorf("xen run: %w", ErrCorrupt)
			}
			copy(page[w*4:], src[:n*4])
			src = src[n*4:]
		}
		w += n
	}
	return src, nil
}
