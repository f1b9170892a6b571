// SPDX-License-Identifier: Apache-2.0

package baseline

import (
	"strings"
	"testing"
)

// BenchmarkCodecs encodes and decodes the synthetic trace with every codec,
// one b.N iteration per pass over the epochs after the full image; it
// reports wall ns per dirty 4 KiB page (encode + decode + apply). The trace
// command gives the figures on real traces.
func BenchmarkCodecs(b *testing.B) {
	const pages = 1024
	var epochs [][2]any
	src := newSynth(pages, 12)
	for {
		pfns, data, err := src.Next()
		if err != nil {
			break
		}
		epochs = append(epochs, [2]any{pfns, data})
	}
	names, _ := StandardCodecs(pages, 64, 2)
	for i, c0 := range names {
		label := strings.NewReplacer(" ", "_", ",", "", ":", "", "+", "").Replace(c0.Name())
		b.Run(label, func(b *testing.B) {
			var n int64
			for it := 0; it < b.N; it++ {
				b.StopTimer()
				cs, err := StandardCodecs(pages, 64, 2)
				if err != nil {
					b.Fatal(err)
				}
				c, replica := cs[i], make([]byte, pages*PageSize)
				// The full image primes the codec (and faults the replica in).
				var buf []byte
				for k, e := range epochs {
					if k == 1 {
						b.StartTimer()
					}
					pfns, data := e[0].([]uint64), e[1].([]byte)
					if buf, err = c.Encode(buf[:0], pfns, data); err != nil {
						b.Fatal(err)
					}
					if err := c.Decode(buf, replica); err != nil {
						b.Fatal(err)
					}
					if k > 0 {
						n += int64(len(pfns))
					}
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(n), "ns/page")
		})
	}
}
