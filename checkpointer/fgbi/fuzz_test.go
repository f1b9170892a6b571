// SPDX-License-Identifier: Apache-2.0

package fgbi

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

var fuzzCfg = Config{MemSize: 16 * PageSize, Sharing: true, Compression: true, Workers: 2}

// seedStreams are valid checkpoints (a full one, then deltas) for a
// 16-page guest, whose decoder has applied the ones before.
func seedStreams() [][]byte {
	g := newGuest(16, 3)
	enc, _ := NewEncoder(fuzzCfg)
	var out [][]byte
	for ep := 0; ep < 4; ep++ {
		if ep > 0 {
			g.step(10)
		}
		pfns, data := g.harvest()
		var buf bytes.Buffer
		_, _ = enc.Encode(&buf, uint64(ep), pfns, data, g.state)
		out = append(out, buf.Bytes())
	}
	return out
}

// FuzzDecode feeds arbitrary bytes to a decoder that already holds a
// replica and a state base: it must never panic, and a rejected input must
// leave the replica untouched.
func FuzzDecode(f *testing.F) {
	seeds := seedStreams()
	for _, s := range seeds {
		f.Add(s)
	}
	base := make([]byte, fuzzCfg.MemSize)
	dec0, _ := NewDecoder(fuzzCfg)
	s0, err := dec0.Decode(bytes.NewReader(seeds[0]), base)
	if err != nil {
		f.Fatal(err)
	}
	s0.Apply(base)
	f.Fuzz(func(t *testing.T, b []byte) {
		dec, _ := NewDecoder(fuzzCfg)
		dec.base = s0.State()
		replica := bytes.Clone(base)
		s, err := dec.Decode(bytes.NewReader(b), replica)
		if !bytes.Equal(replica, base) {
			t.Fatal("Decode wrote to the replica")
		}
		if err != nil {
			return
		}
		s.Apply(replica)
	})
}

// FuzzRoundTrip drives a guest with fuzzer-chosen writes (offset, length,
// byte) over a few epochs and checks that the replica tracks it exactly.
func FuzzRoundTrip(f *testing.F) {
	f.Add([]byte{0, 1, 2, 3}, uint8(0))
	f.Add(bytes.Repeat([]byte{7, 0, 255, 64, 1}, 40), uint8(3))
	f.Fuzz(func(t *testing.T, ops []byte, shape uint8) {
		cfg := fuzzCfg
		cfg.BlockSize = 64 << (shape % 7)
		cfg.Sharing, cfg.Compression = shape&8 == 0, shape&16 == 0
		enc, _ := NewEncoder(cfg)
		dec, _ := NewDecoder(cfg)
		mem := make([]byte, cfg.MemSize)
		replica := make([]byte, cfg.MemSize)
		dirty := map[uint64]bool{0: true}
		for ep := 0; ep < 4 && len(ops) > 0; ep++ {
			for k := 0; k < 16 && len(ops) >= 5; k++ {
				off := int(binary.LittleEndian.Uint16(ops)) * 7 % len(mem)
				n := min(int(ops[2])*int(ops[3])%PageSize, len(mem)-off)
				for i := 0; i < n; i++ {
					mem[off+i] = ops[4] + byte(i*int(ops[3]%3))
				}
				for p := off / PageSize; p <= (off+n)/PageSize && p < len(mem)/PageSize; p++ {
					dirty[uint64(p)] = true
				}
				ops = ops[5:]
			}
			var pfns []uint64
			var data []byte
			for p := uint64(0); p < cfg.MemSize/PageSize; p++ {
				if dirty[p] || ep == 0 {
					pfns = append(pfns, p)
					data = append(data, mem[p*PageSize:(p+1)*PageSize]...)
				}
			}
			clear(dirty)
			var buf bytes.Buffer
			if _, err := enc.Encode(&buf, uint64(ep), pfns, data, nil); err != nil {
				t.Fatal(err)
			}
			s, err := dec.Decode(&buf, replica)
			if err != nil {
				t.Fatal(err)
			}
			s.Apply(replica)
			if !bytes.Equal(mem, replica) {
				t.Fatalf("epoch %d: replica differs at %d", ep, firstDiff(mem, replica))
			}
		}
	})
}

// TestWriteFuzzCorpus regenerates testdata/fuzz/FuzzDecode from seedStreams
// plus mangled variants when FGBI_WRITE_CORPUS=1.
func TestWriteFuzzCorpus(t *testing.T) {
	if os.Getenv("FGBI_WRITE_CORPUS") != "1" {
		t.Skip("set FGBI_WRITE_CORPUS=1 to rewrite the committed corpus")
	}
	dir := filepath.Join("testdata", "fuzz", "FuzzDecode")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	rt := filepath.Join("testdata", "fuzz", "FuzzRoundTrip")
	if err := os.MkdirAll(rt, 0o755); err != nil {
		t.Fatal(err)
	}
	for i, ops := range [][]byte{{0, 1, 2, 3, 9}, bytes.Repeat([]byte{7, 0, 255, 64, 1}, 40), bytes.Repeat([]byte{200, 3, 17, 5, 0, 0, 9, 255, 255, 2}, 30)} {
		body := fmt.Sprintf("go test fuzz v1\n[]byte(%q)\nbyte(%q)\n", ops, byte(i*9))
		if err := os.WriteFile(filepath.Join(rt, fmt.Sprintf("seed-%d", i)), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for i, s := range seedStreams() {
		for j, b := range [][]byte{s, s[:len(s)/2], flip(s, len(s)/3)} {
			body := fmt.Sprintf("go test fuzz v1\n[]byte(%q)\n", b)
			if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("seed-%d-%d", i, j)), []byte(body), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
}

func flip(b []byte, at int) []byte {
	c := bytes.Clone(b)
	c[at] ^= 0x10
	return c
}
