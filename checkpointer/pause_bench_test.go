// SPDX-License-Identifier: Apache-2.0

package checkpointer_test

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/resilire/resilire/checkpointer"
	"github.com/resilire/resilire/checkpointer/sim"

	"github.com/resilire/resilire/checkpointer/codec"
)

// BenchmarkPause16MiB measures the pause of one epoch with 16 MiB dirty:
// Pause, Output.Advance, harvest, copy of 4096 pages, device state, Resume
// (the target is 5 ms). The replayed guest's writes happen outside the timer.
func BenchmarkPause16MiB(b *testing.B) {
	src := sim.SyntheticSource{Pages: 8192, Hot: 4096, Dirty: 4096, Seed: 1}
	d, err := sim.NewReplayDomain("bench", src.Pages, src.Open)
	if err != nil {
		b.Fatal(err)
	}
	p, err := checkpointer.NewPrimary(checkpointer.PrimaryConfig{Domain: d, Output: checkpointer.NewEpochCounter(), Codec: codec.Raw{},
		Dial: func(context.Context) (net.Conn, error) { return nil, net.ErrClosed }})
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	_ = d.Resume(ctx)
	b.SetBytes(16 << 20)
	b.ResetTimer()
	var paused time.Duration
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		d.WaitWritten() // the guest finished writing this epoch
		b.StartTimer()
		st, err := p.TakeEpoch(ctx, i)
		if err != nil {
			b.Fatal(err)
		}
		if st.Pages != 4096 {
			b.Fatalf("%d dirty pages, want 4096", st.Pages)
		}
		paused += st.Pause - st.Stop
	}
	b.StopTimer()
	d.Close()
	b.ReportMetric(float64(paused.Microseconds())/1000/float64(b.N), "ms/pause")
}
