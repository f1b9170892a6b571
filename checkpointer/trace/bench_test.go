// SPDX-License-Identifier: Apache-2.0

package trace

import (
	"errors"
	"io"
	"testing"

	"github.com/resilire/resilire/testenv"
)

// BenchmarkRead measures reading a committed fixture whole (checksums,
// decompression, PFN checks); bytes are the page data delivered.
func BenchmarkRead(b *testing.B) {
	for _, name := range testenv.TraceFixtures {
		b.Run(name, func(b *testing.B) {
			dir, err := testenv.TraceFixtureDir(name)
			if err != nil {
				b.Fatal(err)
			}
			var bytes int64
			for b.Loop() {
				r, err := Open(dir)
				if err != nil {
					b.Fatal(err)
				}
				bytes = 0
				for {
					e, err := r.Next()
					if errors.Is(err, io.EOF) {
						break
					}
					if err != nil {
						b.Fatal(err)
					}
					bytes += int64(len(e.Data))
				}
				r.Close()
			}
			b.SetBytes(bytes)
		})
	}
}
