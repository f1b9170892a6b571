// SPDX-License-Identifier: Apache-2.0

package disk_test

import (
	"bytes"
	"os"
	"testing"

	"github.com/resilire/resilire/checkpointer/disk"
)

// A deferred cut reads its blocks after the guest resumed, yet carries
// them as they were at the cut: a block the guest overwrites before Fill
// is kept (copy-on-write), and the overwrite belongs to the next epoch.
func TestDeferredCutKeepsCutContents(t *testing.T) {
	x, c, img := startExport(t, 1<<20)
	blk := func(v byte) []byte { return bytes.Repeat([]byte{v}, disk.BlockSize) }
	for _, w := range []struct {
		b int64
		v byte
	}{{0, 1}, {3, 2}, {4, 3}} {
		if err := c.WriteAt(blk(w.v), w.b*disk.BlockSize, false); err != nil {
			t.Fatal(err)
		}
	}
	d, err := x.CutDeferred(5)
	if err != nil {
		t.Fatal(err)
	}
	if d.Data != nil || d.Bytes() != 3*disk.BlockSize {
		t.Fatalf("deferred cut: %d data bytes, Bytes %d", len(d.Data), d.Bytes())
	}
	// The guest runs on: block 0 overwritten whole, block 4 in part, block 9 new.
	if err := c.WriteAt(blk(7), 0, false); err != nil {
		t.Fatal(err)
	}
	if err := c.WriteAt([]byte{8, 8, 8}, 4*disk.BlockSize+100, false); err != nil {
		t.Fatal(err)
	}
	if err := c.WriteAt(blk(9), 9*disk.BlockSize, false); err != nil {
		t.Fatal(err)
	}
	if err := x.Fill(d); err != nil {
		t.Fatal(err)
	}
	want := append(append(blk(1), blk(2)...), blk(3)...)
	if !bytes.Equal(d.Data, want) {
		t.Fatal("the filled cut does not hold the blocks as they were at the cut")
	}
	onDisk, _ := os.ReadFile(img)
	if !bytes.Equal(onDisk[:disk.BlockSize], blk(7)) || onDisk[4*disk.BlockSize+100] != 8 {
		t.Fatal("the guest's later writes did not reach the image")
	}
	next, err := x.Cut(6)
	if err != nil {
		t.Fatal(err)
	}
	wantExt := []disk.Extent{{Off: 0, Len: disk.BlockSize}, {Off: 4 * disk.BlockSize, Len: disk.BlockSize}, {Off: 9 * disk.BlockSize, Len: disk.BlockSize}}
	if !equalExtents(next.Extents, wantExt) || !bytes.Equal(next.Data[:disk.BlockSize], blk(7)) {
		t.Fatalf("next cut %v", next.Extents)
	}
	if err := x.Fill(d); err != nil {
		t.Fatalf("filling a filled cut again: %v", err)
	}
}

// A deferred cut still open at the next cut is filled by it (in that
// pause), with its own contents.
func TestDeferredCutFilledByNextCut(t *testing.T) {
	x, c, _ := startExport(t, 1<<20)
	if err := c.WriteAt(bytes.Repeat([]byte{5}, disk.BlockSize), 0, false); err != nil {
		t.Fatal(err)
	}
	d1, err := x.CutDeferred(1)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.WriteAt(bytes.Repeat([]byte{6}, disk.BlockSize), 0, false); err != nil {
		t.Fatal(err)
	}
	d2, err := x.CutDeferred(2)
	if err != nil {
		t.Fatal(err)
	}
	if err := x.Fill(d1); err != nil || !bytes.Equal(d1.Data, bytes.Repeat([]byte{5}, disk.BlockSize)) {
		t.Fatalf("first cut: %v", err)
	}
	if err := x.Fill(d2); err != nil || !bytes.Equal(d2.Data, bytes.Repeat([]byte{6}, disk.BlockSize)) {
		t.Fatalf("second cut: %v", err)
	}
}
