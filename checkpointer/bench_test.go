// SPDX-License-Identifier: Apache-2.0

package checkpointer

import (
	"context"
	"net"
	"testing"
	"time"
)

// BenchmarkPause16MiB measures the pause of one epoch with 16 MiB dirty:
// Pause, Output.Advance, harvest, copy of 4096 pages, device state, Resume
// (the target is 5 ms). The replayed guest's writes happen outside the timer.
func BenchmarkPause16MiB(b *testing.B) {
	src := SyntheticSource{Pages: 8192, Hot: 4096, Dirty: 4096, Seed: 1}
	d, err := NewReplayDomain("bench", src.Pages, src.Open)
	if err != nil {
		b.Fatal(err)
	}
	p, err := NewPrimary(PrimaryConfig{Domain: d, Output: NewEpochCounter(), Codec: RawCodec{},
		Dial: func(context.Context) (net.Conn, error) { return nil, net.ErrClosed }})
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	s := &session{}
	d.Resume(ctx)
	b.SetBytes(16 << 20)
	b.ResetTimer()
	var paused time.Duration
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		d.running.Wait() // the guest finished writing this epoch
		b.StartTimer()
		c, err := p.take(ctx, s, &p.bufs[i%2])
		if err != nil {
			b.Fatal(err)
		}
		if c.stats.Pages != 4096 {
			b.Fatalf("%d dirty pages, want 4096", c.stats.Pages)
		}
		paused += c.stats.Pause - c.stats.Stop
	}
	b.StopTimer()
	d.Close()
	b.ReportMetric(float64(paused.Microseconds())/1000/float64(b.N), "ms/pause")
}
