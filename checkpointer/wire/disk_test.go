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

// FuzzDisk feeds arbitrary DISK payloads to the decoder: it must never
// panic, whatever it accepts round trips and is aligned and numbered.
func FuzzDisk(f *testing.F) {
	f.Add(diskSample().Marshal(nil))
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
		if !bytes.Equal(r.Marshal(nil), p) {
			t.Fatalf("disk record does not round trip")
		}
	})
}

// TestDiskRefusesDamage: every single flipped bit and every truncation of
// a valid record is refused, never accepted with other contents.
func TestDiskRefusesDamage(t *testing.T) {
	p := diskSample().Marshal(nil)
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
	for _, n := range []int{0, 10, 27, 28, len(p) - 1} {
		if _, err := wire.ParseDisk(p[:n]); err == nil {
			t.Fatalf("truncated to %d bytes: accepted", n)
		}
	}
}
