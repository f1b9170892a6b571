// SPDX-License-Identifier: Apache-2.0

package baseline

import (
	"encoding/binary"
	"fmt"

	"github.com/resilire/resilire/checkpointer/fgbi"
)

// XBZRLE is (c), QEMU's XBZRLE (docs/xbzrle.txt, research §5): a
// direct-mapped cache of page copies (slot = page number mod slots, as in
// QEMU's page_cache.c), and per cached page the XOR against its copy as
// ULEB128 zero-run / non-zero-run lengths plus the non-zero bytes. A page
// not cached, or whose encoding would not fit in a page ("overflow"), goes
// raw. Per page on the wire: 8-byte page number, 1-byte kind, and for an
// encoded page a 2-byte length.
type XBZRLE struct {
	mem  []byte
	tags []uint64 // pfn+1 per slot
}

// XBZRLE page kinds.
const (
	xbzRaw   = 0
	xbzDelta = 1
)

// NewXBZRLE returns (c) with a cache of cacheBytes (QEMU's default 64 MB).
func NewXBZRLE(cacheBytes int) *XBZRLE {
	n := cacheBytes / PageSize
	return &XBZRLE{mem: make([]byte, n*PageSize), tags: make([]uint64, n)}
}

// Name implements Codec.
func (*XBZRLE) Name() string { return "(c) xbzrle, 64 MB cache" }

// Encode implements Codec.
func (x *XBZRLE) Encode(dst []byte, pfns []uint64, data []byte) ([]byte, error) {
	for i, p := range pfns {
		cur := data[i*PageSize : (i+1)*PageSize]
		s := p % uint64(len(x.tags))
		old := x.mem[s*PageSize : (s+1)*PageSize]
		dst = binary.LittleEndian.AppendUint64(dst, p)
		if x.tags[s] == p+1 {
			mark := len(dst)
			dst = append(dst, xbzDelta, 0, 0)
			var ok bool
			if dst, ok = fgbi.AppendDelta(dst, old, cur, PageSize-3); ok {
				binary.LittleEndian.PutUint16(dst[mark+1:], uint16(len(dst)-mark-3))
				copy(old, cur)
				continue
			}
			dst = dst[:mark]
		}
		dst = append(append(dst, xbzRaw), cur...)
		x.tags[s] = p + 1
		copy(old, cur)
	}
	return dst, nil
}

// Decode implements Codec.
func (x *XBZRLE) Decode(src []byte, replica []byte) error {
	for len(src) > 0 {
		if len(src) < 9 {
			return fmt.Errorf("xbzrle page header: %w", ErrCorrupt)
		}
		off, err := pageOff(binary.LittleEndian.Uint64(src), replica)
		if err != nil {
			return err
		}
		page := replica[off : off+PageSize]
		kind := src[8]
		src = src[9:]
		switch {
		case kind == xbzRaw && len(src) >= PageSize:
			copy(page, src[:PageSize])
			src = src[PageSize:]
		case kind == xbzDelta && len(src) >= 2:
			n := int(binary.LittleEndian.Uint16(src))
			if len(src) < 2+n {
				return fmt.Errorf("xbzrle delta: %w", ErrCorrupt)
			}
			if used, err := fgbi.ApplyDelta(page, page, src[2:2+n]); err != nil || used != n {
				return fmt.Errorf("xbzrle delta: %w", ErrCorrupt)
			}
			src = src[2+n:]
		default:
			return fmt.Errorf("xbzrle page kind %d: %w", kind, ErrCorrupt)
		}
	}
	return nil
}
