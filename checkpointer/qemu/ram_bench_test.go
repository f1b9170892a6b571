// SPDX-License-Identifier: Apache-2.0

package qemu

import (
	"fmt"
	"math/rand/v2"
	"os"
	"testing"
)

// BenchmarkHarvest scans a 128 MiB RAM file on /dev/shm (as the guest's)
// with 1 and 2 workers, 300 pages dirtied per epoch (an idle guest with a
// light client load). The scan is the bulk of each pause: see
// research/qemu-rig.md (14 GB/s per thread measured there).
func BenchmarkHarvest(b *testing.B) {
	const size = 128 << 20
	dir := "/dev/shm"
	if _, err := os.Stat(dir); err != nil {
		dir = b.TempDir()
	}
	path := fmt.Sprintf("%s/rqm-bench-%d.ram", dir, os.Getpid())
	r, err := CreateReplica(path, size)
	if err != nil {
		b.Fatal(err)
	}
	defer func() { r.Close(); os.Remove(path) }()
	guest := r.Memory()
	for i := range guest {
		guest[i] = byte(i * 7)
	}
	for _, workers := range []int{1, 2} {
		b.Run(fmt.Sprintf("workers=%d", workers), func(b *testing.B) {
			s, err := openRAM(path, size, workers)
			if err != nil {
				b.Fatal(err)
			}
			defer s.close()
			s.baseline(true)
			var dst []uint64
			b.SetBytes(size)
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				for j := 0; j < 300; j++ {
					guest[rand.IntN(size)]++
				}
				if dst, err = s.harvest(dst[:0], true); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(len(dst)), "dirty/epoch")
		})
	}
}
