// SPDX-License-Identifier: Apache-2.0

package baseline

import (
	"encoding/binary"
	"fmt"

	"github.com/klauspost/compress/s2"
	"github.com/klauspost/compress/zstd"
)

// General is (d): a general-purpose compressor over whole dirty pages, in
// frames of up to 256 pages (page numbers raw, then the compressed pages).
type General struct {
	zstd bool
	zenc *zstd.Encoder
	zdec *zstd.Decoder
	buf  []byte
}

const generalFrame = 256

// NewS2 returns (d) with S2 (klauspost/compress, Snappy-compatible, fast).
func NewS2() *General { return &General{} }

// NewZstd returns (d) with zstd at its fastest level.
func NewZstd() *General {
	e, _ := zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedFastest), zstd.WithEncoderConcurrency(1))
	d, _ := zstd.NewReader(nil, zstd.WithDecoderConcurrency(1), zstd.WithDecoderMaxMemory(64<<20))
	return &General{zstd: true, zenc: e, zdec: d}
}

// Name implements Codec.
func (g *General) Name() string {
	if g.zstd {
		return "(d) zstd fastest, whole pages"
	}
	return "(d) s2, whole pages"
}

// Encode implements Codec: per frame, uvarint page count, the page numbers,
// uvarint compressed length, the compressed pages.
func (g *General) Encode(dst []byte, pfns []uint64, data []byte) ([]byte, error) {
	for lo := 0; lo < len(pfns); lo += generalFrame {
		hi := min(lo+generalFrame, len(pfns))
		dst = binary.AppendUvarint(dst, uint64(hi-lo))
		for _, p := range pfns[lo:hi] {
			dst = binary.LittleEndian.AppendUint64(dst, p)
		}
		src := data[lo*PageSize : hi*PageSize]
		if g.zstd {
			g.buf = g.zenc.EncodeAll(src, g.buf[:0])
		} else {
			g.buf = s2.Encode(g.buf[:cap(g.buf)], src)
		}
		dst = binary.AppendUvarint(dst, uint64(len(g.buf)))
		dst = append(dst, g.buf...)
	}
	return dst, nil
}

// Decode implements Codec.
func (g *General) Decode(src []byte, replica []byte) error {
	for len(src) > 0 {
		n, k := binary.Uvarint(src)
		if k <= 0 || n == 0 || n > generalFrame || uint64(len(src)-k) < n*8 {
			return fmt.Errorf("frame header: %w", ErrCorrupt)
		}
		pfns := src[k : k+int(n)*8]
		src = src[k+int(n)*8:]
		clen, k := binary.Uvarint(src)
		if k <= 0 || uint64(len(src)-k) < clen {
			return fmt.Errorf("frame length: %w", ErrCorrupt)
		}
		z := src[k : k+int(clen)]
		src = src[k+int(clen):]
		var err error
		want := int(n) * PageSize
		if cap(g.buf) < want {
			g.buf = make([]byte, want)
		}
		if g.zstd {
			g.buf, err = g.zdec.DecodeAll(z, g.buf[:0])
		} else {
			g.buf, err = s2.Decode(g.buf[:cap(g.buf)], z)
		}
		if err != nil || len(g.buf) != want {
			return fmt.Errorf("frame payload: %v: %w", err, ErrCorrupt)
		}
		for i := 0; i < int(n); i++ {
			off, err := pageOff(binary.LittleEndian.Uint64(pfns[i*8:]), replica)
			if err != nil {
				return err
			}
			copy(replica[off:off+PageSize], g.buf[i*PageSize:(i+1)*PageSize])
		}
	}
	return nil
}
