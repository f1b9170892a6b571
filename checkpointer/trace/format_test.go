// SPDX-License-Identifier: Apache-2.0

package trace

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/klauspost/compress/zstd"
)

// synthEpochs builds epochs over a space of pages pages: epoch 0 full,
// later ones a random subset, page content partly compressible.
func synthEpochs(seed uint64, pages, n int) []Epoch {
	rng := rand.New(rand.NewPCG(seed, 1))
	var out []Epoch
	for seq := range n {
		var e Epoch
		e.Seq = seq
		for p := range pages {
			if seq == 0 || rng.IntN(4) == 0 {
				e.PFNs = append(e.PFNs, uint64(p))
			}
		}
		e.Data = make([]byte, len(e.PFNs)*PageSize)
		for i := range len(e.Data) / 8 {
			if rng.IntN(3) == 0 {
				e.Data[i*8] = byte(rng.Uint32())
			}
		}
		out = append(out, e)
	}
	return out
}

func writeTrace(t *testing.T, dir string, meta Meta, eps []Epoch) {
	t.Helper()
	w, err := Create(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	for _, e := range eps {
		if err := w.WriteEpoch(e.PFNs, e.Data); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Finish(meta); err != nil {
		t.Fatal(err)
	}
}

func readAll(dir string) (Meta, []*Epoch, error) {
	r, err := Open(dir)
	if err != nil {
		return Meta{}, nil, err
	}
	defer r.Close()
	var eps []*Epoch
	for {
		e, err := r.Next()
		if errors.Is(err, io.EOF) {
			return r.Meta(), eps, nil
		}
		if err != nil {
			return r.Meta(), eps, err
		}
		eps = append(eps, e)
	}
}

func TestRoundTrip(t *testing.T) {
	dir := t.TempDir()
	eps := synthEpochs(1, 300, 6)
	eps = append(eps, Epoch{Seq: 6}) // an epoch where nothing changed
	meta := Meta{Name: "synth", Command: []string{"x", "y"}, IntervalMS: 50, Pages: 300,
		Mappings: []Mapping{{Start: 0x1000, End: 0x1000 + 300*PageSize, Perms: "rw-p"}}}
	writeTrace(t, dir, meta, eps)
	got, gotEps, err := readAll(dir)
	if err != nil {
		t.Fatal(err)
	}
	meta.Epochs = len(eps)
	if got.Name != meta.Name || got.Pages != meta.Pages || got.Epochs != meta.Epochs ||
		got.IntervalMS != 50 || !slices.Equal(got.Command, meta.Command) || len(got.Mappings) != 1 {
		t.Fatalf("meta %+v, want %+v", got, meta)
	}
	if len(gotEps) != len(eps) {
		t.Fatalf("%d epochs, want %d", len(gotEps), len(eps))
	}
	for i, e := range gotEps {
		if e.Seq != i || !slices.Equal(e.PFNs, eps[i].PFNs) || !bytes.Equal(e.Data, eps[i].Data) {
			t.Fatalf("epoch %d differs (%d pfns, want %d)", i, len(e.PFNs), len(eps[i].PFNs))
		}
	}
}

func TestWriterRejectsBadInput(t *testing.T) {
	w, err := Create(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if err := w.WriteEpoch([]uint64{2, 1}, make([]byte, 2*PageSize)); err == nil {
		t.Error("descending pfns accepted")
	}
	if err := w.WriteEpoch([]uint64{1}, make([]byte, 10)); err == nil {
		t.Error("short data accepted")
	}
	if err := w.WriteEpoch([]uint64{5}, make([]byte, PageSize)); err != nil {
		t.Fatal(err)
	}
	if err := w.Finish(Meta{Pages: 5}); err == nil {
		t.Error("meta with too few pages accepted")
	}
}

func TestUnfinishedTraceIsNotOpened(t *testing.T) {
	dir := t.TempDir()
	w, err := Create(dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.WriteEpoch([]uint64{0}, make([]byte, PageSize)); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(dir); err == nil {
		t.Fatal("opened an abandoned trace")
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 0 {
		t.Fatalf("abandoned trace left files: %v", ents)
	}
}

// TestRejectsCorruption checks that every truncation and many bit flips
// of a valid file give ErrCorrupt or ErrVersion, from Open or from Next.
func TestRejectsCorruption(t *testing.T) {
	src := t.TempDir()
	writeTrace(t, src, Meta{Name: "c", Pages: 40, IntervalMS: 50}, synthEpochs(2, 40, 3))
	good, err := os.ReadFile(filepath.Join(src, FileName))
	if err != nil {
		t.Fatal(err)
	}
	check := func(name string, b []byte) {
		t.Helper()
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, FileName), b, 0o644); err != nil {
			t.Fatal(err)
		}
		_, _, err := readAll(dir)
		if err == nil {
			t.Fatalf("%s: accepted", name)
		}
		if !errors.Is(err, ErrCorrupt) && !errors.Is(err, ErrVersion) {
			t.Fatalf("%s: error %v wraps neither ErrCorrupt nor ErrVersion", name, err)
		}
	}
	for _, n := range []int{0, 5, headerLen, headerLen + 10, len(good) / 2, len(good) - footerLen, len(good) - 1} {
		check("truncated", good[:n])
	}
	rng := rand.New(rand.NewPCG(3, 4))
	for range 200 {
		b := slices.Clone(good)
		i := rng.IntN(len(b))
		b[i] ^= 1 << rng.IntN(8)
		check("bit flip", b)
	}
	b := slices.Clone(good)
	b[8] = 9 // version, with a fixed-up header checksum
	copy(b[:headerLen], fileHeaderWithVersion(9))
	_, _, err = readAll(writeFile(t, b))
	if !errors.Is(err, ErrVersion) {
		t.Fatalf("version 9: %v, want ErrVersion", err)
	}
}

func fileHeaderWithVersion(v uint32) []byte {
	b := fileHeader()
	b[8], b[9], b[10], b[11] = byte(v), 0, 0, 0
	s := crc(b[:12])
	b[12], b[13], b[14], b[15] = byte(s), byte(s>>8), byte(s>>16), byte(s>>24)
	return b
}

func writeFile(t *testing.T, b []byte) string {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, FileName), b, 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

// FuzzReader feeds arbitrary files to the reader: it must never panic and
// must reject with ErrCorrupt or ErrVersion whatever it does not read whole.
func FuzzReader(f *testing.F) {
	src := f.TempDir()
	w, _ := Create(src)
	for _, e := range synthEpochs(5, 8, 3) {
		_ = w.WriteEpoch(e.PFNs, e.Data)
	}
	_ = w.Finish(Meta{Name: "f", Pages: 8})
	good, _ := os.ReadFile(filepath.Join(src, FileName))
	f.Add(good)
	f.Add(good[:len(good)-3])
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, b []byte) {
		if err := os.WriteFile(filepath.Join(dir, FileName), b, 0o644); err != nil {
			t.Fatal(err)
		}
		meta, eps, err := readAll(dir)
		if err != nil {
			if !errors.Is(err, ErrCorrupt) && !errors.Is(err, ErrVersion) {
				t.Fatalf("error %v wraps neither ErrCorrupt nor ErrVersion", err)
			}
			return
		}
		for _, e := range eps {
			if len(e.Data) != len(e.PFNs)*PageSize {
				t.Fatalf("epoch %d: %d bytes for %d pages", e.Seq, len(e.Data), len(e.PFNs))
			}
			for i, p := range e.PFNs {
				if p >= meta.Pages || (i > 0 && p <= e.PFNs[i-1]) {
					t.Fatalf("epoch %d: bad pfn %d", e.Seq, p)
				}
			}
		}
	})
}

// FuzzEpochPayload builds files with valid checksums around an arbitrary
// epoch payload (PFN varints and page data, compressed here), so the fuzzer
// reaches the payload checks behind the checksums.
func FuzzEpochPayload(f *testing.F) {
	f.Add(uint16(2), uint16(4), append(appendPFNs(nil, []uint64{1, 3}), make([]byte, 2*PageSize)...))
	f.Add(uint16(1), uint16(1), []byte{0})
	f.Add(uint16(3), uint16(2), []byte{0, 1, 1})
	dir := f.TempDir()
	enc, err := zstd.NewWriter(nil)
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, count, pages uint16, raw []byte) {
		stored := enc.EncodeAll(raw, nil)
		h := recHeader{kind: kindEpoch, count: uint32(count), stored: uint32(len(stored)), raw: uint64(len(raw)), sum: crc(raw)}
		js := fmt.Appendf(nil, `{"name":"f","pages":%d,"epochs":1}`, pages)
		b := append(fileHeader(), h.marshal()...)
		b = append(b, stored...)
		metaOff := uint64(len(b))
		mh := recHeader{kind: kindMeta, stored: uint32(len(js)), raw: uint64(len(js)), sum: crc(js)}
		b = append(append(append(b, mh.marshal()...), js...), footer(metaOff, 1)...)
		if err := os.WriteFile(filepath.Join(dir, FileName), b, 0o644); err != nil {
			t.Fatal(err)
		}
		_, eps, err := readAll(dir)
		if err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("error %v does not wrap ErrCorrupt", err)
			}
			return
		}
		e := eps[0]
		if len(e.PFNs) != int(count) || len(e.Data) != int(count)*PageSize {
			t.Fatalf("%d pfns, %d bytes for count %d", len(e.PFNs), len(e.Data), count)
		}
		for i, p := range e.PFNs {
			if p >= uint64(pages) || (i > 0 && p <= e.PFNs[i-1]) {
				t.Fatalf("bad pfn %d at %d (pages %d)", p, i, pages)
			}
		}
	})
}
