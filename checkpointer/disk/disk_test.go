// SPDX-License-Identifier: Apache-2.0

package disk_test

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	"github.com/resilire/resilire/checkpointer/disk"
	"github.com/resilire/resilire/checkpointer/wire"
	"github.com/resilire/resilire/testenv/nbd"
)

// newImage creates a file of size bytes filled from seed (0: zeros).
func newImage(t testing.TB, dir, name string, size int, seed uint64) string {
	t.Helper()
	b := make([]byte, size)
	if seed != 0 {
		r := rand.New(rand.NewPCG(seed, 1))
		for i := range b {
			b[i] = byte(r.Uint32())
		}
	}
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func startExport(t testing.TB, size int) (*disk.Export, *nbd.Client, string) {
	t.Helper()
	dir := t.TempDir()
	img := newImage(t, dir, "primary.img", size, 0)
	x, err := disk.NewExport(img, filepath.Join(dir, "nbd.sock"), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { x.Close() })
	c, err := nbd.Dial(filepath.Join(dir, "nbd.sock"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return x, c, img
}

// TestExportTracksEpochs: writes through NBD land in the image, each cut
// carries exactly the blocks written since the previous one with their
// contents at the cut, and Resend brings back what was never acked.
func TestExportTracksEpochs(t *testing.T) {
	x, c, img := startExport(t, 1<<20)
	if c.Size() != 1<<20 {
		t.Fatalf("export size %d", c.Size())
	}
	if err := c.WriteAt(bytes.Repeat([]byte{1}, 100), 4000, false); err != nil { // straddles blocks 0 and 1
		t.Fatal(err)
	}
	if err := c.WriteAt(bytes.Repeat([]byte{2}, 4096), 3*4096, true); err != nil {
		t.Fatal(err)
	}
	if err := c.Flush(); err != nil {
		t.Fatal(err)
	}
	d, err := x.Cut(5)
	if err != nil {
		t.Fatal(err)
	}
	want := []disk.Extent{{Off: 0, Len: 8192}, {Off: 3 * 4096, Len: 4096}}
	if !equalExtents(d.Extents, want) || d.Bytes() != 3*4096 {
		t.Fatalf("cut extents %v (%d bytes), want %v", d.Extents, d.Bytes(), want)
	}
	onDisk, _ := os.ReadFile(img)
	if !bytes.Equal(d.Data[:8192], onDisk[:8192]) || !bytes.Equal(d.Data[8192:], onDisk[3*4096:4*4096]) {
		t.Fatalf("cut data differs from the image")
	}
	got := make([]byte, 100)
	if err := c.ReadAt(got, 4000); err != nil || !bytes.Equal(got, bytes.Repeat([]byte{1}, 100)) {
		t.Fatalf("read back: %v %x", err, got[:8])
	}
	if d, _ := x.Cut(6); len(d.Extents) != 0 || len(d.Records()) != 1 || d.Records()[0].Count != 0 {
		t.Fatalf("idle epoch: %v", d.Extents)
	}
	x.Acked(4)
	if x.Resend(4) { // epochs 5 and 6 never acked
		t.Fatal("backup at the acked epoch: full resend")
	}
	if d, _ := x.Cut(7); !equalExtents(d.Extents, want) {
		t.Fatalf("resend: %v, want %v", d.Extents, want)
	}
	if x.Resend(7) { // 7 committed, its ACK lost
		t.Fatal("backup at an unacked cut: full resend")
	}
	if d, _ := x.Cut(8); len(d.Extents) != 0 {
		t.Fatalf("cut the backup holds resent: %v", d.Extents)
	}
	if !x.Resend(3) {
		t.Fatal("backup at an unknown epoch: no full resend")
	}
	if d, _ := x.Cut(9); d.Bytes() != 1<<20 {
		t.Fatalf("full resend: %d bytes", d.Bytes())
	}
	st := x.Stats()
	if st.Writes != 2 || st.Flushes != 1 || st.BusyCuts != 0 {
		t.Fatalf("stats %+v", st)
	}
}

// TestExportRefusesBadRequests: out-of-range and malformed requests get
// an error reply (the guest sees EIO/EINVAL), the connection survives.
func TestExportRefusesBadRequests(t *testing.T) {
	_, c, _ := startExport(t, 64<<10)
	for _, r := range []struct {
		typ, flags uint16
		off        int64
		n          uint32
	}{
		{0, 0, 64 << 10, 1},            // read past the end
		{0, 0, 0, disk.MaxRequest + 1}, // read too large
		{0, 0, 0, 0},                   // empty read
		{3, 0, 0, 5},                   // flush with a length
		{0, 4, 0, 512},                 // unknown flag
		{9, 0, 0, 0},                   // unknown command
	} {
		code, err := c.Raw(r.typ, r.flags, r.off, r.n)
		if err != nil || code == 0 {
			t.Fatalf("request %+v: code %d err %v, want an error code", r, code, err)
		}
	}
	if err := c.WriteAt(make([]byte, 4096), 64<<10-2048, false); !errors.Is(err, nbd.ErrServer) {
		t.Fatalf("write past the end: %v", err)
	}
	if err := c.WriteAt(make([]byte, 512), 0, false); err != nil {
		t.Fatalf("connection unusable after refusals: %v", err)
	}
}

func equalExtents(a, b []disk.Extent) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// applyDelta stages, commits and applies a delta on r.
func applyDelta(t testing.TB, r *disk.Replica, d *disk.Delta) {
	t.Helper()
	for _, rec := range d.Records() {
		p := rec.Marshal(nil)
		rec, err := wire.ParseDisk(p)
		if err != nil {
			t.Fatal(err)
		}
		if err := r.Stage(rec); err != nil {
			t.Fatal(err)
		}
	}
	if err := r.Commit(d.Epoch); err != nil {
		t.Fatal(err)
	}
	if err := r.Apply(); err != nil {
		t.Fatal(err)
	}
}

// TestReplicaFollowsExport: after each applied cut, the replica image
// equals the primary's image byte for byte; a journal refuses records
// out of order and an incomplete commit.
func TestReplicaFollowsExport(t *testing.T) {
	const size = 2 << 20
	x, c, img := startExport(t, size)
	rimg := newImage(t, t.TempDir(), "backup.img", size, 0)
	r, err := disk.OpenReplica(rimg, disk.ReplicaOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	rng := rand.New(rand.NewPCG(3, 4))
	for e := uint64(1); e <= 20; e++ {
		for i := 0; i < rng.IntN(40); i++ {
			n := 512 * (1 + rng.IntN(700))
			off := int64(512 * rng.IntN((size-n)/512))
			buf := make([]byte, n)
			for j := range buf {
				buf[j] = byte(rng.Uint32())
			}
			if err := c.WriteAt(buf, off, false); err != nil {
				t.Fatal(err)
			}
		}
		d, err := x.Cut(e)
		if err != nil {
			t.Fatal(err)
		}
		applyDelta(t, r, d)
		a, _ := os.ReadFile(img)
		b, _ := os.ReadFile(rimg)
		if !bytes.Equal(a, b) {
			t.Fatalf("epoch %d: replica differs from the primary", e)
		}
	}
	recs := (&disk.Delta{Epoch: 30, Extents: []disk.Extent{{Off: 0, Len: 2 * wire.MaxDiskData}}, Data: make([]byte, 2*wire.MaxDiskData)}).Records()
	if err := r.Stage(recs[1]); !errors.Is(err, disk.ErrJournal) {
		t.Fatalf("record 1 first: %v", err)
	}
	if err := r.Stage(recs[0]); err != nil {
		t.Fatal(err)
	}
	if err := r.Commit(30); !errors.Is(err, disk.ErrJournal) {
		t.Fatalf("commit of 1 record of 2: %v", err)
	}
	if err := r.Abort(); err != nil {
		t.Fatal(err)
	}
	bad := wire.DiskRecord{Epoch: 31, Count: 1, Off: size, Data: make([]byte, 4096)}
	if err := r.Stage(bad); !errors.Is(err, disk.ErrRange) {
		t.Fatalf("extent past the end: %v", err)
	}
}

// TestStaleCommitDoesNotCommit: a committed journal whose truncation was
// lost (power cut) and records of the next checkpoint staged over it,
// same size and epoch (pre-copy chunks are all epoch 0): the old commit
// record sits where the new one would, but its chain does not match, so
// reopening discards the uncommitted records.
func TestStaleCommitDoesNotCommit(t *testing.T) {
	dir := t.TempDir()
	img := newImage(t, dir, "b.img", 1<<20, 0)
	d1 := &disk.Delta{Extents: []disk.Extent{{Off: 0, Len: 8192}}, Data: bytes.Repeat([]byte{1}, 8192)}
	d2 := &disk.Delta{Extents: []disk.Extent{{Off: 0, Len: 8192}}, Data: bytes.Repeat([]byte{2}, 8192)}
	stage := func(d *disk.Delta, commit bool) []byte {
		r, err := disk.OpenReplica(img, disk.ReplicaOptions{})
		if err != nil {
			t.Fatal(err)
		}
		defer r.Close()
		for _, rec := range d.Records() {
			if err := r.Stage(rec); err != nil {
				t.Fatal(err)
			}
		}
		if commit {
			if err := r.Commit(0); err != nil {
				t.Fatal(err)
			}
		}
		j, _ := os.ReadFile(img + ".journal")
		return j
	}
	committed1 := stage(d1, true) // journal of chunk 1, committed, never truncated
	staged2 := stage(d2, false)   // chunk 2 staged over it (what a lost truncation leaves)
	torn := append(staged2, committed1[len(staged2):]...)
	if err := os.WriteFile(img+".journal", torn, 0o600); err != nil {
		t.Fatal(err)
	}
	r, err := disk.OpenReplica(img, disk.ReplicaOptions{})
	if err != nil {
		t.Fatal(err)
	}
	r.Close()
	b, _ := os.ReadFile(img)
	if b[0] == 2 {
		t.Fatal("records staged after a stale commit record were applied")
	}
}
