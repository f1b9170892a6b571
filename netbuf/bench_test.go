// SPDX-License-Identifier: Apache-2.0

package netbuf

import (
	"encoding/binary"
	"fmt"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/resilire/resilire/dataplane"
)

// releaseRate holds n 60-byte frames (64 on the wire with the FCS) of
// `flows` UDP flows and measures one Release: frames written per second of
// Release wall time.
func releaseRate(tb testing.TB, path dataplane.CapturePath, queues, n, flows int, noPin bool) Stats {
	r := newNSRig(tb)
	r.staticNeighbors(tb)
	_, b := r.attach(tb, path, Options{Queues: queues, MaxBytes: 256 << 20, NoPin: noPin})
	var wg sync.WaitGroup
	for f := 0; f < flows; f++ {
		g, _ := r.udpPair(tb, 8000+f)
		wg.Add(1)
		go func() {
			defer wg.Done()
			msg := make([]byte, 18) // 14 + 20 + 8 + 18 = 60 bytes
			for i := 0; i < n/flows; i++ {
				binary.BigEndian.PutUint32(msg, uint32(i))
				g.Write(msg)
			}
		}()
	}
	wg.Wait()
	want := int64(n / flows * flows)
	if s := waitHeld(tb, b, want); s.HeldFrames != want {
		tb.Fatalf("held %d of %d frames (ring full? %+v)", s.HeldFrames, want, s)
	}
	e, err := b.Advance()
	if err == nil {
		err = b.Release(e)
	}
	if err != nil {
		tb.Fatal(err)
	}
	return b.Stats()
}

// BenchmarkDataplane prints the data-plane table (make bench-dataplane).
func BenchmarkDataplane(b *testing.B) {
	for i := 0; i < b.N; i++ {
		w := os.Stdout
		fmt.Fprintf(w, "\n64-byte UDP release rate (path ring, 200k frames, 8 flows)\n")
		fmt.Fprintf(w, "%-8s %-6s %10s %10s %12s %10s %14s\n", "queues", "pinned", "frames", "wall", "pps(wall)", "cpu", "frames/cpu-s")
		for _, q := range []int{1, 2, 4} {
			for _, noPin := range []bool{false, true} {
				s := releaseRate(b, dataplane.PathRing, q, 200000, 8, noPin)
				fmt.Fprintf(w, "%-8d %-6v %10d %10v %12.0f %10v %14.0f\n", q, !noPin, s.LastFrames, s.LastRelease.Round(time.Millisecond),
					float64(s.LastFrames)/s.LastRelease.Seconds(), s.LastCPU.Round(time.Millisecond), float64(s.LastFrames)/s.LastCPU.Seconds())
			}
		}
	}
}

