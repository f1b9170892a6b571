// SPDX-License-Identifier: Apache-2.0

package qemu_test

import (
	"context"
	"testing"
	"time"

	"github.com/resilire/resilire/checkpointer/qemu"
	"github.com/resilire/resilire/testenv"
)

// BenchmarkCheckpoint boots the guest once, sets its dirtier to the given
// rate, and times b.N epochs (stop, harvest, copy, device state, cont) at
// 50 ms intervals. It reports the pause (stop->cont) p50/p99 and the dirty
// pages per epoch.
//
//	RESILIRE_TEST_PRIVILEGED=1 go test -run '^$' -bench Checkpoint -benchtime 100x ./checkpointer/qemu/
func BenchmarkCheckpoint(b *testing.B) {
	testenv.RequirePrivileged(b)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	rig, _, vm, _ := bootPrimary(b, ctx)
	cl, err := dialGuest(ctx, rig)
	if err != nil {
		b.Fatal(err)
	}
	defer cl.Close()
	dom, err := qemu.NewDomain(vm, qemu.DomainOptions{})
	if err != nil {
		b.Fatal(err)
	}
	defer dom.Close()
	if err := dom.EnableDirtyLog(ctx); err != nil {
		b.Fatal(err)
	}
	for _, rate := range []int{0, 100} { // pages per 10 ms
		if err := cl.Dirty(rate); err != nil {
			b.Fatal(err)
		}
		// One epoch to absorb what accumulated since the last one.
		if _, err := takeCheckpoint(ctx, dom, nil); err != nil {
			b.Fatal(err)
		}
		b.Run(map[int]string{0: "idle", 100: "dirty=100pages/10ms"}[rate], func(b *testing.B) {
			var pauses []time.Duration
			var dirty []int
			for i := 0; i < b.N; i++ {
				time.Sleep(50 * time.Millisecond)
				ck, err := takeCheckpoint(ctx, dom, nil)
				if err != nil {
					b.Fatal(err)
				}
				pauses = append(pauses, ck.pause)
				dirty = append(dirty, len(ck.pfns))
			}
			b.ReportMetric(float64(percentile(pauses, .5).Microseconds())/1000, "pause-p50-ms")
			b.ReportMetric(float64(percentile(pauses, .99).Microseconds())/1000, "pause-p99-ms")
			b.ReportMetric(float64(median(dirty)), "dirty-pages/epoch")
		})
	}
}
