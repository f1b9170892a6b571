// SPDX-License-Identifier: Apache-2.0

package fgbi

import (
	"bytes"
	"fmt"
	"io"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// benchEpochs precomputes a full image and n epochs of a simulated guest.
func benchEpochs(pages, n, writes int) (pfns [][]uint64, data [][]byte) {
	g := newGuest(pages, 11)
	for i := 0; i <= n; i++ {
		if i > 0 {
			g.step(writes)
		}
		p, d := g.harvest()
		pfns, data = append(pfns, p), append(data, d)
	}
	return pfns, data
}

// BenchmarkEncode measures encoding per dirty 4 KiB page (SetBytes counts
// the dirty input), for each mode, on one worker.
func BenchmarkEncode(b *testing.B) {
	pfns, data := benchEpochs(4096, 16, 1500)
	for _, m := range modes[:3] {
		b.Run(m.name, func(b *testing.B) {
			cfg := Config{MemSize: 4096 * PageSize, Sharing: m.sharing, Compression: m.compression, Workers: 1}
			enc, _ := NewEncoder(cfg)
			_, _ = enc.Encode(io.Discard, 0, pfns[0], data[0], nil)
			b.ResetTimer()
			c0 := cpuNow()
			var n int64
			for i := 0; i < b.N; i++ {
				k := 1 + i%(len(pfns)-1)
				if _, err := enc.Encode(io.Discard, uint64(i+1), pfns[k], data[k], nil); err != nil {
					b.Fatal(err)
				}
				n += int64(len(data[k]))
			}
			reportPerPage(b, n, cpuNow()-c0)
		})
	}
}

// BenchmarkDecode measures decode + verify + apply per dirty 4 KiB page.
func BenchmarkDecode(b *testing.B) {
	pfns, data := benchEpochs(4096, 16, 1500)
	for _, m := range modes[:3] {
		b.Run(m.name, func(b *testing.B) {
			cfg := Config{MemSize: 4096 * PageSize, Sharing: m.sharing, Compression: m.compression, Workers: 1}
			enc, _ := NewEncoder(cfg)
			dec, _ := NewDecoder(cfg)
			replica := make([]byte, cfg.MemSize)
			var streams [][]byte
			for k := range pfns {
				var buf bytes.Buffer
				if _, err := enc.Encode(&buf, uint64(k), pfns[k], data[k], nil); err != nil {
					b.Fatal(err)
				}
				streams = append(streams, buf.Bytes())
			}
			// Each stream only decodes on top of the one before, so every
			// iteration replays the whole sequence.
			b.ResetTimer()
			c0 := cpuNow()
			var n int64
			for i := 0; i < b.N; i++ {
				for k, s := range streams {
					st, err := dec.Decode(bytes.NewReader(s), replica)
					if err != nil {
						b.Fatal(fmt.Errorf("epoch %d: %w", k, err))
					}
					st.Apply(replica)
					n += int64(len(data[k]))
				}
			}
			reportPerPage(b, n, cpuNow()-c0)
		})
	}
}

// reportPerPage reports wall and CPU nanoseconds per dirty page and CPU
// GB/s: the machine is shared, so CPU time is the stable figure.
func reportPerPage(b *testing.B, n int64, cpu time.Duration) {
	pages := float64(n / PageSize)
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/pages, "ns/page")
	b.ReportMetric(float64(cpu.Nanoseconds())/pages, "cpu-ns/page")
	b.ReportMetric(float64(n)/cpu.Seconds()/1e9, "cpu-GB/s")
}

func cpuNow() time.Duration {
	var ts unix.Timespec
	_ = unix.ClockGettime(unix.CLOCK_PROCESS_CPUTIME_ID, &ts)
	return time.Duration(ts.Nano())
}
