// SPDX-License-Identifier: Apache-2.0

package fgbi

import (
	"bytes"
	"errors"
	"io"
	"testing"

	"github.com/zeebo/xxh3"
)

func TestEncodeRejectsBadInput(t *testing.T) {
	enc, err := NewEncoder(Config{MemSize: 8 * PageSize})
	if err != nil {
		t.Fatal(err)
	}
	page := make([]byte, PageSize)
	cases := []struct {
		pfns []uint64
		data []byte
		want error
	}{
		{[]uint64{8}, page, ErrRange},
		{[]uint64{3, 3}, append(page, page...), ErrInput},
		{[]uint64{4, 2}, append(page, page...), ErrInput},
		{[]uint64{1}, page[:100], ErrInput},
	}
	for _, c := range cases {
		if _, err := enc.Encode(io.Discard, 1, c.pfns, c.data, nil); !errors.Is(err, c.want) {
			t.Errorf("pfns %v: %v, want %v", c.pfns, err, c.want)
		}
	}
	if _, err := enc.Encode(io.Discard, 1, nil, nil, make([]byte, MaxStateSize+1)); !errors.Is(err, ErrTooLarge) {
		t.Errorf("oversized state: %v", err)
	}
}

func TestConfigValidation(t *testing.T) {
	for _, c := range []Config{{MemSize: 0}, {MemSize: 100}, {MemSize: PageSize, BlockSize: 32},
		{MemSize: PageSize, BlockSize: 96}, {MemSize: PageSize, BlockSize: 8192}} {
		if _, err := NewEncoder(c); !errors.Is(err, ErrConfig) {
			t.Errorf("%+v: %v, want ErrConfig", c, err)
		}
		if _, err := NewDecoder(c); !errors.Is(err, ErrConfig) {
			t.Errorf("decoder %+v: %v, want ErrConfig", c, err)
		}
	}
}

func TestMemoryOverhead(t *testing.T) {
	per, fixed, err := MemoryOverhead(Config{MemSize: 1 << 30, Workers: 2})
	if err != nil {
		t.Fatal(err)
	}
	// 4 B per 64 B block plus 5 B per page; 64 MiB cache plus its index.
	if want := uint64(64<<20 + 5*(1<<18)); per != want {
		t.Errorf("per-guest %d, want %d", per, want)
	}
	if want := uint64(64<<20 + 10*(1<<14) + 8*(1<<16) + 2*24*(1<<13)); fixed != want {
		t.Errorf("fixed %d, want %d", fixed, want)
	}
	per256, _, _ := MemoryOverhead(Config{MemSize: 1 << 30, BlockSize: 256})
	if per256 >= per/3 {
		t.Errorf("256 B blocks cost %d, 64 B blocks %d: want about a quarter", per256, per)
	}
}

// TestResetResendsEverything checks that after Reset the next checkpoint
// rebuilds a blank replica alone (no references to what the old backup had).
func TestResetResendsEverything(t *testing.T) {
	cfg := Config{MemSize: 32 * PageSize, Sharing: true, Compression: true}
	g := newGuest(32, 4)
	enc, _ := NewEncoder(cfg)
	for ep := 0; ep < 3; ep++ {
		g.step(20)
		pfns, data := g.harvest()
		if _, err := enc.Encode(io.Discard, uint64(ep), pfns, data, g.state); err != nil {
			t.Fatal(err)
		}
	}
	enc.Reset()
	all := make([]uint64, 32)
	for i := range all {
		all[i] = uint64(i)
	}
	var buf bytes.Buffer
	if _, err := enc.Encode(&buf, 9, all, bytes.Clone(g.mem), g.state); err != nil {
		t.Fatal(err)
	}
	dec, _ := NewDecoder(cfg)
	replica := make([]byte, cfg.MemSize)
	s, err := dec.Decode(&buf, replica)
	if err != nil {
		t.Fatal(err)
	}
	s.Apply(replica)
	if !bytes.Equal(replica, g.mem) || !bytes.Equal(s.State(), g.state) {
		t.Fatal("a fresh backup is not rebuilt by the checkpoint after Reset")
	}
}

// TestIndexHitIsConfirmed plants a content-index entry that claims a block's
// content sits where other bytes are: the encoder must check the bytes and
// send the block itself, so the replica stays exact.
func TestIndexHitIsConfirmed(t *testing.T) {
	cfg := Config{MemSize: 8 * PageSize, Sharing: true, Compression: true, Workers: 1}
	enc, _ := NewEncoder(cfg)
	dec, _ := NewDecoder(cfg)
	mem := make([]byte, cfg.MemSize)
	for i := range mem {
		mem[i] = byte(i*7 + i/251)
	}
	replica := make([]byte, cfg.MemSize)
	step := func(ep uint64, pfns []uint64) {
		t.Helper()
		var data []byte
		for _, p := range pfns {
			data = append(data, mem[p*PageSize:(p+1)*PageSize]...)
		}
		var buf bytes.Buffer
		st, err := enc.Encode(&buf, ep, pfns, data, nil)
		if err != nil {
			t.Fatal(err)
		}
		s, err := dec.Decode(&buf, replica)
		if err != nil {
			t.Fatal(err)
		}
		s.Apply(replica)
		if !bytes.Equal(replica, mem) {
			t.Fatalf("epoch %d: replica differs at %d (stats %+v)", ep, firstDiff(replica, mem), st)
		}
	}
	step(0, []uint64{0, 1, 2, 3, 4, 5, 6, 7})
	// Page 5 gets a brand-new block; the index is told (falsely) that
	// block 0 of page 2 already holds it.
	blk := bytes.Repeat([]byte{0xA5, 0x5A, 1, 2}, 16)
	enc.idx.put(xxh3.Hash(blk), 2*uint64(PageSize/64))
	copy(mem[5*PageSize+640:], blk)
	step(1, []uint64{5})
	// And a true duplicate: the same new block copied to page 6 is found
	// through the index (page 5 is cached now) and sent as a reference.
	copy(mem[6*PageSize+128:], blk)
	var buf bytes.Buffer
	st, err := enc.Encode(&buf, 2, []uint64{6}, bytes.Clone(mem[6*PageSize:7*PageSize]), nil)
	if err != nil || st.SharedBlocks != 1 {
		t.Fatalf("duplicate block: %d shared, err %v", st.SharedBlocks, err)
	}
	s, err := dec.Decode(&buf, replica)
	if err != nil {
		t.Fatal(err)
	}
	s.Apply(replica)
	if !bytes.Equal(replica, mem) {
		t.Fatal("replica differs after a shared block")
	}
}
