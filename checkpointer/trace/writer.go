// SPDX-License-Identifier: Apache-2.0

package trace

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"

	"github.com/klauspost/compress/zstd"
)

// Writer writes a trace file. Epochs are written as they come; the meta goes
// last, so a recorder can grow the page space while it runs. The file is
// written under a temporary name and renamed into place by Finish, so a
// directory never holds a half-written trace.
type Writer struct {
	dir    string
	f      *os.File
	bw     *bufio.Writer
	off    uint64
	epochs int
	maxPFN uint64 // one past the highest PFN written
	enc    *zstd.Encoder
	raw    []byte
	done   bool
}

// Create starts a trace in dir, creating the directory if needed.
func Create(dir string) (w *Writer, err error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("create trace dir: %w", err)
	}
	f, err := os.Create(filepath.Join(dir, FileName+".tmp"))
	if err != nil {
		return nil, fmt.Errorf("create trace file: %w", err)
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	enc, err := zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedDefault), zstd.WithEncoderConcurrency(1))
	if err != nil {
		return nil, fmt.Errorf("zstd encoder: %w", err)
	}
	w = &Writer{dir: dir, f: f, bw: bufio.NewWriterSize(f, 1<<20), enc: enc}
	if err := w.write(fileHeader()); err != nil {
		return nil, err
	}
	return w, nil
}

func (w *Writer) write(b []byte) error {
	if _, err := w.bw.Write(b); err != nil {
		return fmt.Errorf("write trace: %w", err)
	}
	w.off += uint64(len(b))
	return nil
}

// WriteEpoch appends the next epoch: pfns ascending and unique, data holding
// len(pfns) pages in the same order. Epochs are numbered from 0 in call order.
func (w *Writer) WriteEpoch(pfns []uint64, data []byte) error {
	if w.done {
		return errors.New("write epoch: writer finished")
	}
	if len(data) != len(pfns)*PageSize {
		return fmt.Errorf("write epoch %d: %d bytes of data for %d pages", w.epochs, len(data), len(pfns))
	}
	for i, p := range pfns {
		if p >= MaxPages || (i > 0 && p <= pfns[i-1]) {
			return fmt.Errorf("write epoch %d: pfn %d (index %d) out of order or beyond %d", w.epochs, p, i, MaxPages)
		}
	}
	w.raw = appendPFNs(w.raw[:0], pfns)
	w.raw = append(w.raw, data...)
	stored := w.enc.EncodeAll(w.raw, nil)
	if len(stored) > math.MaxUint32 {
		return fmt.Errorf("write epoch %d: %d bytes compressed, too large", w.epochs, len(stored))
	}
	h := recHeader{kind: kindEpoch, seq: uint32(w.epochs), count: uint32(len(pfns)),
		stored: uint32(len(stored)), raw: uint64(len(w.raw)), sum: crc(w.raw)}
	if err := w.write(h.marshal()); err != nil {
		return err
	}
	if err := w.write(stored); err != nil {
		return err
	}
	if n := len(pfns); n > 0 && pfns[n-1]+1 > w.maxPFN {
		w.maxPFN = pfns[n-1] + 1
	}
	w.epochs++
	return nil
}

// Epochs returns the number of epochs written so far.
func (w *Writer) Epochs() int { return w.epochs }

// Finish writes meta (its Epochs field is set to the epochs written) and the
// footer, and renames the file into place. meta.Pages must cover every PFN
// written.
func (w *Writer) Finish(meta Meta) error {
	if w.done {
		return errors.New("finish trace: already finished")
	}
	meta.Epochs = w.epochs
	if meta.Pages < w.maxPFN || meta.Pages > MaxPages {
		return fmt.Errorf("finish trace: meta says %d pages, pfns written reach %d (max %d)", meta.Pages, w.maxPFN, MaxPages)
	}
	js, err := json.Marshal(meta)
	if err != nil {
		return fmt.Errorf("finish trace: %w", err)
	}
	metaOff := w.off
	h := recHeader{kind: kindMeta, stored: uint32(len(js)), raw: uint64(len(js)), sum: crc(js)}
	for _, b := range [][]byte{h.marshal(), js, footer(metaOff, uint32(w.epochs))} {
		if err := w.write(b); err != nil {
			return err
		}
	}
	if err := w.bw.Flush(); err != nil {
		return fmt.Errorf("finish trace: %w", err)
	}
	if err := w.f.Close(); err != nil {
		return fmt.Errorf("finish trace: %w", err)
	}
	w.done = true
	if err := os.Rename(w.f.Name(), filepath.Join(w.dir, FileName)); err != nil {
		return fmt.Errorf("finish trace: %w", err)
	}
	return nil
}

// Close abandons an unfinished trace (removing its temporary file) and
// releases resources; after Finish it only releases resources.
func (w *Writer) Close() error {
	w.enc.Close()
	if w.done {
		return nil
	}
	w.done = true
	err := w.f.Close()
	if rerr := os.Remove(w.f.Name()); err == nil {
		err = rerr
	}
	return err
}
