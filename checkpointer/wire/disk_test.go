// SPDX-License-Identifier: Apache-2.0

package wire_test

import (
	"bytes"
	"errors"
	"testing"

	"github.com/resilire/resilire/checkpointer/wire"
)

func diskSample() wire.DiskRecord {
	return wire.DiskRecord{Epoch: 7, Index: 1, Count: 3, Off: 8192, Data: bytes.Repeat([]byte{0xab}, wire.DiskAlign)}
}

// randomDisk is incompressible: it travels raw.
func randomDisk() wire.DiskRecord {
	d := make([]byte, 2*wire.DiskAlign)
	x := uint32(1)
	for i := range d {
		x = x*1664525 + 1013904223
		d[i] = byte(x >> 24)
	}
	return wire.DiskRecord{Epoch: 8, Count: 1, Off: 4096, Data: d}
}

// FuzzDisk feeds arbitrary DISK payloads to the decoder: it must never
// panic, whatever it accepts round trips and is aligned and numbered.
func FuzzDisk(f *testing.F) {
	f.Add(diskSample().Marshal(nil))
	f.Add(randomDisk().Marshal(nil))
	f.Add(wire.DiskRecord{Epoch: 9}.Marshal(nil))
	f.Add([]byte{1, 2, 3})
	f.Fuzz(func(t *testing.T, p []byte) {
		r, err := wire.ParseDisk(p)
		if err != nil {
			if !errors.Is(err, wire.ErrFrame) && !errors.Is(err, wire.ErrCorrupt) {
				t.Fatalf("unexpected error class: %v", err)
			}
			return
		}
		if len(r.Data) > wire.MaxDiskData || len(r.Data)%wire.DiskAlign != 0 || r.Off%wire.DiskAlign != 0 {
			t.Fatalf("accepted %d bytes at %d", len(r.Data), r.Off)
		}
		if (r.Count == 0) != (len(r.Data) == 0) || (r.Count > 0 && r.Index >= r.Count) {
			t.Fatalf("accepted record %d of %d with %d bytes", r.Index, r.Count, len(r.Data))
		}
		q, err := wire.ParseDisk(r.Marshal(nil))
		if err != nil || q.Epoch != r.Epoch || q.Index != r.Index || q.Count != r.Count || q.Off != r.Off || !bytes.Equal(q.Data, r.Data) {
			t.Fatalf("disk record does not round trip: %v", err)
		}
	})
}

// TestDiskCompression: compressible data travels S2-encoded and comes
// back byte for byte; incompressible data travels raw.
func TestDiskCompression(t *testing.T) {
	for _, r := range []wire.DiskRecord{diskSample(), randomDisk()} {
		p := r.Marshal(nil)
		q, err := wire.ParseDisk(p)
		if err != nil || !bytes.Equal(q.Data, r.Data) {
			t.Fatalf("round trip: %v", err)
		}
		t.Logf("%d bytes of data in a %d-byte payload", len(r.Data), len(p))
	}
	if p := diskSample().Marshal(nil); len(p) > 1024 {
		t.Fatalf("a 4 KiB run of one byte took %d bytes", len(p))
	}
	if p := randomDisk().Marshal(nil); len(p) != 29+2*wire.DiskAlign {
		t.Fatalf("random data: %d-byte payload, want raw", len(p))
	}
}

// TestDiskRefusesDamage: every single flipped bit and every truncation of
// a valid record (compressed or raw) is refused, never accepted with
// other contents.
func TestDiskRefusesDamage(t *testing.T) {
	for _, r := range []wire.DiskRecord{diskSample(), randomDisk()} {
		testDiskDamage(t, r.Marshal(nil))
	}
}

func testDiskDamage(t *testing.T, p []byte) {
	if _, err := wire.ParseDisk(p); err != nil {
		t.Fatalf("valid record: %v", err)
	}
	for i := 0; i < len(p)*8; i += 7 {
		q := bytes.Clone(p)
		q[i/8] ^= 1 << (i % 8)
		if _, err := wire.ParseDisk(q); err == nil {
			t.Fatalf("bit %d flipped: accepted", i)
		}
	}
	for _, n := range []int{0, 10, 28, 29, len(p) - 1} {
		if _, err := wire.ParseDisk(p[:n]); err == nil {
			t.Fatalf("truncated to %d bytes: accepted", n)
		}
	}
}
