// SPDX-License-Identifier: Apache-2.0

package baseline

import (
	"fmt"
	"testing"
)

// BenchmarkCodecs encodes and decodes the synthetic trace with every codec,
// one b.N iteration per full pass; it reports wall ns per dirty 4 KiB page
// (the trace command gives the CPU-time figures on real traces).
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
	for i := range names {
		b.Run(fmt.Sprintf("%d", i), func(b *testing.B) {
			var n int64
			for it := 0; it < b.N; it++ {
				cs, err := StandardCodecs(pages, 64, 2)
				if err != nil {
					b.Fatal(err)
				}
				c, replica := cs[i], make([]byte, pages*PageSize)
				var buf []byte
				for _, e := range epochs {
					pfns, data := e[0].([]uint64), e[1].([]byte)
					if buf, err = c.Encode(buf[:0], pfns, data); err != nil {
						b.Fatal(err)
					}
					if err := c.Decode(buf, replica); err != nil {
						b.Fatal(err)
					}
					n += int64(len(pfns))
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(n), "ns/page")
		})
	}
}
