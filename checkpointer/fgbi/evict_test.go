// SPDX-License-Identifier: Apache-2.0

package fgbi

import (
	"bytes"
	"testing"
)

// A cached page changed in a checkpoint whose commit evicts it before its
// changed blocks are stored: its fingerprints must still follow what the
// backup received, so that changing the block back to its older value is
// seen and sent.
func TestEvictedMidCommitThenChangedBack(t *testing.T) {
	cfg := Config{MemSize: 2 * PageSize, Sharing: true, Compression: true, XORCacheBytes: PageSize, Workers: 1}
	enc, err := NewEncoder(cfg)
	if err != nil {
		t.Fatal(err)
	}
	dec, err := NewDecoder(cfg)
	if err != nil {
		t.Fatal(err)
	}
	guest := make([]byte, cfg.MemSize)
	replica := make([]byte, cfg.MemSize)
	for i := range guest {
		guest[i] = byte(i*7 + 3)
	}
	step := func(epoch uint64, pfns ...uint64) {
		t.Helper()
		var data []byte
		for _, p := range pfns {
			data = append(data, guest[p*PageSize:(p+1)*PageSize]...)
		}
		var w bytes.Buffer
		if _, err := enc.Encode(&w, epoch, pfns, data, nil); err != nil {
			t.Fatal(err)
		}
		s, err := dec.Decode(&w, replica)
		if err != nil {
			t.Fatal(err)
		}
		s.Apply(replica)
		if !bytes.Equal(replica, guest) {
			t.Fatalf("epoch %d: replica differs from the guest", epoch)
		}
	}
	step(1, 0, 1) // full copy; page 1 ends up in the one-page cache
	old := guest[PageSize+64]
	guest[PageSize+64] ^= 0xff // page 1 changes one block...
	guest[10] ^= 0xff          // ...while page 0, not cached, changes and evicts page 1 first
	step(2, 0, 1)
	guest[PageSize+64] = old // the block changes back
	step(3, 1)
}
