// SPDX-License-Identifier: Apache-2.0

package netbuf

import (
	"encoding/binary"
	"sync"
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/resilire/resilire/dataplane"
)

// releaseRate holds n 60-byte frames (64 on the wire with the FCS) of
// `flows` UDP flows and measures one Release.
// With sinkDown the client's end is set down before the release, so the
// bridge drops the frames: what remains is netbuf's own cost plus the
// tap, redirect and bridge input (no client stack).
func releaseRate(tb testing.TB, path dataplane.CapturePath, queues, n, flows int, noPin, sinkDown bool) Stats {
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
				_, _ = g.Write(msg) // a lost datagram shows in the count
			}
		}()
	}
	wg.Wait()
	want := int64(n / flows * flows)
	if s := waitHeld(tb, b, want); s.HeldFrames != want {
		tb.Fatalf("held %d of %d frames (ring full? %+v)", s.HeldFrames, want, s)
	}
	if sinkDown {
		if err := r.Client.Do(func() error {
			lk, err := netlink.LinkByName(r.ClientIf)
			if err == nil {
				err = netlink.LinkSetDown(lk)
			}
			return err
		}); err != nil {
			tb.Fatal(err)
		}
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

// BenchmarkReleaseRate is the release rows of BenchmarkDataplane on their
// own (path ring, 64-byte frames, client socket), for profiling one
// setting: go test -bench ReleaseRate/q2pin -benchtime 1x.
func BenchmarkReleaseRate(b *testing.B) {
	for _, c := range []struct {
		name   string
		queues int
		noPin  bool
	}{{"q1pin", 1, false}, {"q2pin", 2, false}, {"q2nopin", 2, true}} {
		b.Run(c.name, func(b *testing.B) {
			var frames uint64
			var wall time.Duration
			for i := 0; i < b.N; i++ {
				s := releaseRate(b, dataplane.PathRing, c.queues, releaseFrames, 8, c.noPin, false)
				frames += s.LastFrames
				wall += s.LastRelease
			}
			b.ReportMetric(float64(frames)/wall.Seconds(), "pps")
		})
	}
}

// BenchmarkTCPBuffered is the TCP rows of BenchmarkDataplane on their
// own, for profiling and repeated runs: go test -bench TCPBuffered/10ms
// -benchtime 1x -count 5.
func BenchmarkTCPBuffered(b *testing.B) {
	for _, c := range []struct {
		epoch, dur time.Duration
	}{{10 * time.Millisecond, tcpDur10}, {50 * time.Millisecond, tcpDur50}} {
		b.Run(c.epoch.String(), func(b *testing.B) {
			var gbps float64
			for i := 0; i < b.N; i++ {
				g, info := tcpThroughput(b, c.epoch, c.dur)
				gbps += g
				b.Logf("%.2f Gbit/s; %s", g, info)
			}
			b.ReportMetric(gbps/float64(b.N), "Gbit/s")
		})
	}
}
