// SPDX-License-Identifier: Apache-2.0

package fgbi

import (
	"bytes"
	"fmt"
	"testing"
)

// modes are the codec variants the benchmark compares.
var modes = []struct {
	name                 string
	sharing, compression bool
	cache                int
}{
	{"detect", false, false, 0},
	{"share", true, false, 0},
	{"full", true, true, 0},
	{"nocache", true, true, -1},
	{"tinycache", true, true, 4 * PageSize},
}

func TestRoundTrip(t *testing.T) {
	epochs := 40
	if testing.Short() {
		epochs = 15
	}
	for _, bs := range []int{64, 128, 256, 512, 1024, 2048, 4096} {
		for _, m := range modes {
			t.Run(fmt.Sprintf("%s/%d", m.name, bs), func(t *testing.T) {
				roundTrip(t, Config{MemSize: 64 * PageSize, BlockSize: bs, Sharing: m.sharing,
					Compression: m.compression, XORCacheBytes: m.cache, Workers: 3}, epochs, uint64(bs))
			})
		}
	}
}

// roundTrip runs epochs checkpoints of a mutating guest through an encoder
// and decoder and checks the replica and state after every one.
func roundTrip(t *testing.T, cfg Config, epochs int, seed uint64) {
	t.Helper()
	g := newGuest(int(cfg.MemSize/PageSize), seed)
	enc, err := NewEncoder(cfg)
	if err != nil {
		t.Fatal(err)
	}
	dec, err := NewDecoder(cfg)
	if err != nil {
		t.Fatal(err)
	}
	replica := make([]byte, cfg.MemSize)
	var wire, raw int64
	for ep := 0; ep < epochs; ep++ {
		if ep > 0 {
			g.step(30)
		}
		if ep == epochs/2 { // a reconnect: full resync of every page
			enc.Reset()
			for p := uint64(0); p < g.pages(); p++ {
				g.dirty[p] = true
			}
		}
		pfns, data := g.harvest()
		var buf bytes.Buffer
		st, err := enc.Encode(&buf, uint64(ep), pfns, data, g.state)
		if err != nil {
			t.Fatalf("epoch %d: encode: %v", ep, err)
		}
		if st.WireBytes != int64(buf.Len()) {
			t.Fatalf("epoch %d: stats say %d bytes, wrote %d", ep, st.WireBytes, buf.Len())
		}
		wire += st.WireBytes
		raw += int64(len(data))
		s, err := dec.Decode(&buf, replica)
		if err != nil {
			t.Fatalf("epoch %d: decode: %v", ep, err)
		}
		if buf.Len() != 0 {
			t.Fatalf("epoch %d: decoder left %d bytes", ep, buf.Len())
		}
		if s.Epoch() != uint64(ep) {
			t.Fatalf("epoch %d: staged epoch %d", ep, s.Epoch())
		}
		prev := bytes.Clone(replica)
		var extents [][2]uint64
		s.Extents(func(off, n uint64) { extents = append(extents, [2]uint64{off, n}) })
		s.Apply(replica)
		if !bytes.Equal(replica, g.mem) {
			t.Fatalf("epoch %d: replica differs from the guest at byte %d", ep, firstDiff(replica, g.mem))
		}
		// Extents cover every byte Apply wrote: putting them back undoes
		// the checkpoint (a group backup's undo).
		undone := bytes.Clone(replica)
		for _, x := range extents {
			copy(undone[x[0]:x[0]+x[1]], prev[x[0]:x[0]+x[1]])
		}
		if !bytes.Equal(undone, prev) {
			t.Fatalf("epoch %d: Apply wrote byte %d outside its extents", ep, firstDiff(undone, prev))
		}
		if !bytes.Equal(s.State(), g.state) {
			t.Fatalf("epoch %d: state differs", ep)
		}
	}
	t.Logf("%d epochs: %d wire bytes for %d dirty bytes", epochs, wire, raw)
}

func firstDiff(a, b []byte) int {
	for i := range a {
		if a[i] != b[i] {
			return i
		}
	}
	return -1
}

// TestSharingAndDeltaShrink checks that the toggles do what they claim on a
// workload with sparse writes and duplicated content: each one shrinks the
// stream.
func TestSharingAndDeltaShrink(t *testing.T) {
	sizes := map[string]int64{}
	for _, m := range modes[:3] {
		cfg := Config{MemSize: 64 * PageSize, Sharing: m.sharing, Compression: m.compression, Workers: 2}
		g := newGuest(64, 1)
		enc, _ := NewEncoder(cfg)
		for ep := 0; ep < 20; ep++ {
			g.step(40)
			pfns, data := g.harvest()
			var buf bytes.Buffer
			st, err := enc.Encode(&buf, uint64(ep), pfns, data, nil)
			if err != nil {
				t.Fatal(err)
			}
			if ep > 0 {
				sizes[m.name] += st.WireBytes
			}
		}
	}
	if sizes["share"] >= sizes["detect"] || sizes["full"] >= sizes["share"] {
		t.Fatalf("wire bytes detect %d, share %d, full %d: want strictly decreasing", sizes["detect"], sizes["share"], sizes["full"])
	}
}

// TestShadowChurn runs a guest whose dirty set is far larger than the shadow
// cache, so pages are evicted while their changed blocks are being stored.
func TestShadowChurn(t *testing.T) {
	roundTrip(t, Config{MemSize: 64 * PageSize, Sharing: true, Compression: true, XORCacheBytes: 3 * PageSize, Workers: 1}, 60, 77)
}

// TestOutputIndependentOfWorkers checks that parallel encoding produces the
// same bytes as one worker, epoch after epoch (incl. adaptive sampling and
// the index learning batch by batch; a tiny cache makes index slots churn).
func TestOutputIndependentOfWorkers(t *testing.T) {
	const pages = 4400 // 18 chunks: more than one batch
	var encs []*Encoder
	for _, w := range []int{1, 3} {
		e, _ := NewEncoder(Config{MemSize: pages * PageSize, Sharing: true, Compression: true,
			XORCacheBytes: 64 * PageSize, Workers: w})
		encs = append(encs, e)
	}
	g := newGuest(pages, 21)
	for ep := 0; ep < 4; ep++ {
		for k := 0; k < 3000; k++ { // blocks copied between pages all over memory
			src, dst := g.page(g.randPage()), g.touch(g.hot(64))
			if k%2 == 0 {
				dst = g.touch(g.randPage())
			}
			so, do := g.off(64), g.off(64)
			copy(dst[do:do+64], src[so:so+64])
		}
		pfns, data := g.harvest()
		var a, b bytes.Buffer
		if _, err := encs[0].Encode(&a, uint64(ep), pfns, data, g.state); err != nil {
			t.Fatal(err)
		}
		if _, err := encs[1].Encode(&b, uint64(ep), pfns, data, g.state); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(a.Bytes(), b.Bytes()) {
			t.Fatalf("epoch %d: 1 worker wrote %d bytes, 3 workers %d, different", ep, a.Len(), b.Len())
		}
	}
}

// TestRoundTripManyBatches covers checkpoints of more chunks than one
// parallel batch, written batch by batch.
func TestRoundTripManyBatches(t *testing.T) {
	roundTrip(t, Config{MemSize: 4400 * PageSize, Sharing: true, Compression: true, Workers: 2}, 3, 5)
}
