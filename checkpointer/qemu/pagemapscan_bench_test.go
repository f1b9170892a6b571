// SPDX-License-Identifier: Apache-2.0

//go:build linux && amd64

package qemu

import (
	"fmt"
	"math/rand/v2"
	"os"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"
)

// BenchmarkHarvestExact is BenchmarkHarvest's counterpart for exact
// tracking: a RAM file on /dev/shm mapped shared in this process, write-
// protected by this process's own userfaultfd (no injection: the ioctls
// are the same), 300 pages written per epoch, one PAGEMAP_SCAN per
// harvest, at 128 MiB and 1 GiB. Compare ns/op across sizes (and with
// BenchmarkHarvest): it should barely grow with RAM.
func BenchmarkHarvestExact(b *testing.B) {
	if err := probeKernel(); err != nil {
		b.Skipf("exact tracking unavailable: %v", err)
	}
	for _, size := range []int{128 << 20, 1 << 30} {
		b.Run(fmt.Sprintf("ram=%dMiB", size>>20), func(b *testing.B) {
			path := fmt.Sprintf("/dev/shm/rqm-bench-exact-%d.ram", os.Getpid())
			r, err := CreateReplica(path, uint64(size))
			if err != nil {
				b.Skipf("RAM file: %v", err)
			}
			defer func() { r.Close(); os.Remove(path) }()
			guest := r.Memory()
			start := uint64(uintptr(unsafe.Pointer(&guest[0])))
			fd, _, e := unix.Syscall(unix.SYS_USERFAULTFD, uffdFlags, 0, 0)
			if e != 0 {
				b.Skipf("userfaultfd: %v", e)
			}
			defer unix.Close(int(fd))
			if err := uffdAPIHandshake(int(fd)); err != nil {
				b.Fatal(err)
			}
			if err := uffdProtect(int(fd), start, uint64(size)); err != nil {
				b.Fatal(err)
			}
			s, err := openPagemapScanner(os.Getpid(), start, start+uint64(size))
			if err != nil {
				b.Fatal(err)
			}
			defer s.close()
			var dst []uint64
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				b.StopTimer()
				for j := 0; j < 300; j++ {
					guest[rand.IntN(size)]++
				}
				b.StartTimer()
				if dst, err = s.scan(dst[:0]); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(len(dst)), "dirty/epoch")
		})
	}
}
