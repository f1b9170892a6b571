// SPDX-License-Identifier: Apache-2.0

package checkpointer_test

import (
	"context"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/resilire/resilire/checkpointer/codec"
	"github.com/resilire/resilire/checkpointer/fgbi"
	"github.com/resilire/resilire/checkpointer/sim"
)

// BenchmarkPrimaryMemory reports what the protecting agent keeps in dom0
// for one 128 MiB guest once it is protected (the primary's live heap,
// MiB), beside the wire bytes per epoch and the initial sync's time, for
// FGBI with its shadow cache at 64 (the default), 16 and 0 MiB
// (--fgbi-cache-mib) and for raw pages. The primary and its backup run in
// this process: the heap is attributed to the primary by the allocating
// stack (every allocation is profiled).
//
//	go test -run '^$' -bench BenchmarkPrimaryMemory -benchtime 1x ./checkpointer/
func BenchmarkPrimaryMemory(b *testing.B) {
	rate := runtime.MemProfileRate
	runtime.MemProfileRate = 1
	defer func() { runtime.MemProfileRate = rate }()
	fg := func(cacheMiB int) codec.Codec {
		c := codec.DefaultFGBI()
		c.Config.XORCacheBytes = cacheMiB << 20
		if cacheMiB == 0 {
			c.Config.XORCacheBytes = -1
		}
		return c
	}
	for _, bc := range []struct {
		name  string
		codec codec.Codec
	}{
		{"fgbi-cache64", fg(fgbi.DefaultXORCacheBytes >> 20)},
		{"fgbi-cache16", fg(16)},
		{"fgbi-nocache", fg(0)},
		{"raw", codec.Raw{}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			var heap, wire, sync float64
			for range b.N {
				d := sim.NewDomain(sim.Config{Name: "mem", MemSize: 128 << 20, Seed: 7, WritesPerMs: 200, HotPages: 8192})
				d.Start()
				var primary uint64
				res, err := sim.RunBench(context.Background(), sim.BenchConfig{Domain: d, Codec: bc.codec,
					Interval: 20 * time.Millisecond, Epochs: 40, AtEnd: func() { primary = primaryHeap() }})
				d.Stop()
				if err != nil {
					b.Fatal(err)
				}
				heap += float64(primary) / (1 << 20)
				wire += float64(res.WireBytes) / float64(res.Epochs)
				sync += res.SyncTime.Seconds() * 1000
			}
			n := float64(b.N)
			b.ReportMetric(heap/n, "primary-MiB")
			b.ReportMetric(wire/n/1024, "KiB/epoch")
			b.ReportMetric(sync/n, "ms-sync")
		})
	}
}

// primaryHeap is the live heap allocated under the primary's engine
// (checkpointer.NewPrimary, (*Primary) methods), after a full GC.
func primaryHeap() uint64 {
	runtime.GC()
	runtime.GC()
	var recs []runtime.MemProfileRecord
	for {
		n, ok := runtime.MemProfile(recs, false)
		if ok {
			recs = recs[:n]
			break
		}
		recs = make([]runtime.MemProfileRecord, n+64)
	}
	var sum uint64
	for _, r := range recs {
		frames := runtime.CallersFrames(r.Stack())
		for {
			f, more := frames.Next()
			if strings.Contains(f.Function, "checkpointer.(*Primary)") || strings.HasSuffix(f.Function, "checkpointer.NewPrimary") {
				sum += uint64(r.InUseBytes())
				break
			}
			if !more {
				break
			}
		}
	}
	return sum
}
