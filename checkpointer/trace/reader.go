// SPDX-License-Identifier: Apache-2.0

package trace

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/klauspost/compress/zstd"
)

// Reader reads a trace epoch by epoch. It is not safe for concurrent use.
type Reader struct {
	f       *os.File
	br      *bufio.Reader
	off     uint64 // file offset of br's next byte
	metaOff uint64
	meta    Meta
	next    int // seq of the next epoch
	dec     *zstd.Decoder
	err     error // sticky error
}

// Open opens the trace in dir and verifies its header, footer and meta.
func Open(dir string) (r *Reader, err error) {
	f, err := os.Open(filepath.Join(dir, FileName))
	if err != nil {
		return nil, fmt.Errorf("open trace: %w", err)
	}
	defer func() {
		if err != nil {
			f.Close()
		}
	}()
	r, err = newReader(f)
	if err != nil {
		return nil, fmt.Errorf("open trace %s: %w", dir, err)
	}
	return r, nil
}

// newReader verifies and reads the trace file f.
func newReader(f *os.File) (*Reader, error) {
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	size := uint64(st.Size())
	if size < headerLen+recordLen+footerLen {
		return nil, fmt.Errorf("%d bytes, too short: %w", size, ErrCorrupt)
	}
	hdr := make([]byte, headerLen)
	if _, err := f.ReadAt(hdr, 0); err != nil {
		return nil, fmt.Errorf("read header: %w", err)
	}
	if err := checkFileHeader(hdr); err != nil {
		return nil, err
	}
	ft := make([]byte, footerLen)
	if _, err := f.ReadAt(ft, int64(size-footerLen)); err != nil {
		return nil, fmt.Errorf("read footer: %w", err)
	}
	metaOff, epochs, err := parseFooter(ft)
	if err != nil {
		return nil, err
	}
	meta, err := readMeta(f, metaOff, size)
	if err != nil {
		return nil, err
	}
	if meta.Epochs != int(epochs) {
		return nil, fmt.Errorf("meta says %d epochs, footer %d: %w", meta.Epochs, epochs, ErrCorrupt)
	}
	if _, err := f.Seek(headerLen, io.SeekStart); err != nil {
		return nil, err
	}
	dec, err := zstd.NewReader(nil, zstd.WithDecoderConcurrency(1), zstd.WithDecoderMaxMemory(maxRaw(meta.Pages)))
	if err != nil {
		return nil, fmt.Errorf("zstd decoder: %w", err)
	}
	return &Reader{f: f, br: bufio.NewReaderSize(f, 64<<10), off: headerLen, metaOff: metaOff, meta: meta, dec: dec}, nil
}

// maxRaw bounds the raw payload of an epoch of count pages: at most 10
// varint bytes per PFN plus the page data.
func maxRaw(count uint64) uint64 {
	return count*(PageSize+10) + 16
}

func readMeta(f *os.File, metaOff, size uint64) (Meta, error) {
	var m Meta
	if metaOff < headerLen || metaOff > size-footerLen-recordLen {
		return m, fmt.Errorf("meta offset %d out of range: %w", metaOff, ErrCorrupt)
	}
	hb := make([]byte, recordLen)
	if _, err := f.ReadAt(hb, int64(metaOff)); err != nil {
		return m, fmt.Errorf("read meta: %w", err)
	}
	h, err := parseRecHeader(hb)
	if err != nil {
		return m, fmt.Errorf("meta: %w", err)
	}
	if h.kind != kindMeta || h.stored > maxMetaLen || uint64(h.stored) != h.raw ||
		metaOff+recordLen+uint64(h.stored) != size-footerLen {
		return m, fmt.Errorf("meta record kind %d length %d does not end at the footer: %w", h.kind, h.stored, ErrCorrupt)
	}
	js := make([]byte, h.stored)
	if _, err := f.ReadAt(js, int64(metaOff+recordLen)); err != nil {
		return m, fmt.Errorf("read meta: %w", err)
	}
	if crc(js) != h.sum {
		return m, fmt.Errorf("meta checksum: %w", ErrCorrupt)
	}
	if err := json.Unmarshal(js, &m); err != nil {
		return m, fmt.Errorf("meta json: %v: %w", err, ErrCorrupt)
	}
	if m.Pages > MaxPages || m.Epochs < 0 || m.IntervalMS < 0 {
		return m, fmt.Errorf("meta pages %d epochs %d interval %d out of range: %w", m.Pages, m.Epochs, m.IntervalMS, ErrCorrupt)
	}
	return m, nil
}

// Meta returns the trace's description.
func (r *Reader) Meta() Meta { return r.meta }

// Next returns the next epoch, or io.EOF after the last one. Each call
// returns freshly allocated slices the caller may keep.
func (r *Reader) Next() (*Epoch, error) {
	if r.err != nil {
		return nil, r.err
	}
	e, err := r.next1()
	if err != nil {
		r.err = err
		if !errors.Is(err, io.EOF) {
			err = fmt.Errorf("trace epoch %d: %w", r.next, err)
			r.err = err
		}
		return nil, err
	}
	r.next++
	return e, nil
}

func (r *Reader) next1() (*Epoch, error) {
	if r.next == r.meta.Epochs {
		if r.off != r.metaOff {
			return nil, fmt.Errorf("%d unexpected bytes after the last epoch: %w", r.metaOff-r.off, ErrCorrupt)
		}
		return nil, io.EOF
	}
	hb := make([]byte, recordLen)
	if err := r.read(hb); err != nil {
		return nil, err
	}
	h, err := parseRecHeader(hb)
	if err != nil {
		return nil, err
	}
	if h.kind != kindEpoch || int(h.seq) != r.next {
		return nil, fmt.Errorf("record kind %d seq %d, want an epoch record: %w", h.kind, h.seq, ErrCorrupt)
	}
	if uint64(h.count) > r.meta.Pages || h.raw < uint64(h.count)*PageSize || h.raw > maxRaw(uint64(h.count)) {
		return nil, fmt.Errorf("%d pages, %d raw bytes: out of range for %d pages: %w", h.count, h.raw, r.meta.Pages, ErrCorrupt)
	}
	if uint64(h.stored) > r.metaOff-r.off {
		return nil, fmt.Errorf("payload of %d bytes runs past the epochs: %w", h.stored, ErrCorrupt)
	}
	stored := make([]byte, h.stored)
	if err := r.read(stored); err != nil {
		return nil, err
	}
	raw, err := r.decompress(stored, h.raw)
	if err != nil {
		return nil, err
	}
	if crc(raw) != h.sum {
		return nil, fmt.Errorf("payload checksum: %w", ErrCorrupt)
	}
	pfns, n, err := parsePFNs(raw, int(h.count), r.meta.Pages)
	if err != nil {
		return nil, err
	}
	if uint64(len(raw)-n) != uint64(h.count)*PageSize {
		return nil, fmt.Errorf("%d bytes of page data for %d pages: %w", len(raw)-n, h.count, ErrCorrupt)
	}
	return &Epoch{Seq: int(h.seq), PFNs: pfns, Data: raw[n:]}, nil
}

// decompress inflates stored, which must give exactly want bytes. want was
// checked against the meta's page count; up to preallocMax it is allocated
// at once, beyond that the buffer grows with the bytes actually produced,
// so a lying header alone cannot force a huge allocation.
func (r *Reader) decompress(stored []byte, want uint64) ([]byte, error) {
	var raw []byte
	var err error
	if want <= preallocMax {
		raw, err = r.dec.DecodeAll(stored, make([]byte, 0, want))
	} else if err = r.dec.Reset(bytes.NewReader(stored)); err == nil {
		var buf bytes.Buffer
		_, err = io.Copy(&buf, io.LimitReader(r.dec, int64(want)+1))
		raw = buf.Bytes()
	}
	if err != nil {
		return nil, fmt.Errorf("zstd: %v: %w", err, ErrCorrupt)
	}
	if uint64(len(raw)) != want {
		return nil, fmt.Errorf("payload inflates to %d bytes, header says %d: %w", len(raw), want, ErrCorrupt)
	}
	return raw, nil
}

// preallocMax is the largest epoch payload decompress allocates up front.
const preallocMax = 64 << 20

// read fills b from the file, turning a short file into ErrCorrupt.
func (r *Reader) read(b []byte) error {
	if _, err := io.ReadFull(r.br, b); err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return fmt.Errorf("file truncated: %w", ErrCorrupt)
		}
		return err
	}
	r.off += uint64(len(b))
	return nil
}

// Close releases the file.
func (r *Reader) Close() error {
	r.dec.Close()
	return r.f.Close()
}
