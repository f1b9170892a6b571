// SPDX-License-Identifier: Apache-2.0

package xen

import (
	"context"
	"io"
	"testing"
)

// BenchmarkHarvestDirty measures one epoch's bitmap handling for a 1 GiB
// guest (262144 frames) with 1% of its pages dirty, through the fake
// boundary: bitmap walk, dense translation, append.
func BenchmarkHarvestDirty(b *testing.B) {
	ctx := context.Background()
	const frames = 1 << 18
	f := newFakeXC(7, frames, Extent{0, frames})
	d, err := NewDomain(f, 7, "bench", Options{})
	if err != nil {
		b.Fatal(err)
	}
	_ = d.EnableDirtyLog(ctx)
	_ = d.Pause(ctx)
	dst := make([]uint64, 0, frames)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		for p := uint64(0); p < frames; p += 100 {
			f.dirty[p] = true
		}
		var err error
		if dst, err = d.HarvestDirty(ctx, dst[:0]); err != nil || len(dst) != frames/100+1 {
			b.Fatalf("%d pages, %v", len(dst), err)
		}
	}
}

// BenchmarkWriteXLImage measures building the failover image of a 64 MiB
// guest (the stream writer's throughput on activation).
func BenchmarkWriteXLImage(b *testing.B) {
	st := &State{XenMajor: 4, XenMinor: 17, Extents: []Extent{{0, 0x9f}, {0x100, 16384 - 0x9f}},
		HVMContext: make([]byte, 4096)}
	mem := make([]byte, 16384*4096)
	b.SetBytes(int64(len(mem)))
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if err := WriteXLImage(io.Discard, mem, st, nil); err != nil {
			b.Fatal(err)
		}
	}
}
