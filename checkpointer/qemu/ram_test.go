// SPDX-License-Identifier: Apache-2.0

package qemu

import (
	"bytes"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

// ramFixture is a RAM file mapped writable (the "guest") and a scanner
// over it (the checkpointer's read-only mapping).
func ramFixture(t *testing.T, pages, workers int) ([]byte, *ramScanner) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "ram")
	size := uint64(pages * PageSize)
	r, err := CreateReplica(path, size)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	s, err := openRAM(path, size, workers)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.close() })
	return r.Memory(), s
}

func TestHarvest(t *testing.T) {
	for _, workers := range []int{1, 2, 3, 7} {
		guest, s := ramFixture(t, 100, workers)
		if _, err := s.harvest(nil, true); err == nil {
			t.Fatal("harvest before baseline succeeded")
		}
		s.baseline(true)
		got, err := s.harvest(nil, true)
		if err != nil || len(got) != 0 {
			t.Fatalf("workers=%d: clean memory reported %v, %v", workers, got, err)
		}
		for _, pfn := range []int{99, 0, 42, 43, 7} {
			guest[pfn*PageSize+PageSize-1]++
		}
		// Write and restore: the content equals the baseline, not dirty.
		guest[10*PageSize] = 9
		guest[10*PageSize] = 0
		got, _ = s.harvest([]uint64{1000}, true)
		if want := []uint64{1000, 0, 7, 42, 43, 99}; !slices.Equal(got, want) {
			t.Fatalf("workers=%d: harvest = %v, want %v", workers, got, want)
		}
		if got, _ = s.harvest(nil, true); len(got) != 0 {
			t.Fatalf("workers=%d: second harvest = %v, want none", workers, got)
		}
	}
}

func TestReadPages(t *testing.T) {
	guest, s := ramFixture(t, 8, 2)
	for i := range guest {
		guest[i] = byte(i / PageSize)
	}
	dst := make([]byte, 2*PageSize)
	if err := s.read([]uint64{5, 2}, dst, false); err != nil {
		t.Fatal(err)
	}
	if dst[0] != 5 || dst[PageSize] != 2 || !bytes.Equal(dst[:PageSize], guest[5*PageSize:6*PageSize]) {
		t.Fatalf("read wrong pages")
	}
	if err := s.read([]uint64{8}, dst[:PageSize], false); err == nil {
		t.Fatal("read beyond memory succeeded")
	}
	if err := s.read([]uint64{1}, dst, false); err == nil {
		t.Fatal("read with a wrong dst size succeeded")
	}
}

// TestBaselineFollowsCopy is the torn-initial-copy case: the baseline is
// taken while the guest runs, a page changes before the full copy reads
// it, then changes back. The copy holds the intermediate content, so the
// page must be reported at the first harvest.
func TestBaselineFollowsCopy(t *testing.T) {
	guest, s := ramFixture(t, 4, 1)
	s.baseline(false)
	guest[2*PageSize] = 1 // changes after the baseline...
	all := []uint64{0, 1, 2, 3}
	replica := make([]byte, 4*PageSize)
	if err := s.read(all, replica, false); err != nil { // ...is copied...
		t.Fatal(err)
	}
	guest[2*PageSize] = 0 // ...and changes back.
	s.newPause()
	got, _ := s.harvest(nil, true)
	if !slices.Equal(got, []uint64{2}) {
		t.Fatalf("harvest = %v, want [2]: the replica holds a stale page 2", got)
	}
}

func TestOpenRAMErrors(t *testing.T) {
	path := filepath.Join(t.TempDir(), "short")
	if err := os.WriteFile(path, make([]byte, PageSize), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := openRAM(path, 2*PageSize, 1); err == nil {
		t.Error("mapped a file shorter than the memory size")
	}
	if _, err := openRAM(path, 100, 1); err == nil {
		t.Error("accepted a size that is not a page multiple")
	}
	if _, err := openRAM(filepath.Join(t.TempDir(), "missing"), PageSize, 1); err == nil {
		t.Error("opened a missing file")
	}
}

func TestReplicaSharesFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "rep")
	r, err := CreateReplica(path, 2*PageSize)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	r.Memory()[PageSize] = 0xAB
	if err := r.Sync(); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil || len(b) != 2*PageSize || b[PageSize] != 0xAB {
		t.Fatalf("file content does not follow the mapping: len %d, err %v", len(b), err)
	}
	// Reopening keeps the content (a standby may map it).
	r2, err := CreateReplica(path, 2*PageSize)
	if err != nil {
		t.Fatal(err)
	}
	defer r2.Close()
	if r2.Memory()[PageSize] != 0xAB {
		t.Fatal("reopening the replica lost its content")
	}
}
