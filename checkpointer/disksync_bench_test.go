// SPDX-License-Identifier: Apache-2.0

package checkpointer_test

import (
	"context"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/resilire/resilire/checkpointer"
	"github.com/resilire/resilire/checkpointer/codec"
	"github.com/resilire/resilire/checkpointer/disk"
	"github.com/resilire/resilire/checkpointer/sim"
	"github.com/resilire/resilire/testenv/nbd"
)

// BenchmarkDiskInitialSync: the initial copy of a disk (2 GiB of random
// data by default; RESILIRE_BENCH_DISK_MIB) to a fresh backup over
// loopback while a simulated guest writes it through the export. Reports
// the time to the first consistent checkpoint and the longest pause.
//
//	go test -run '^$' -bench BenchmarkDiskInitialSync -benchtime 1x ./checkpointer/
func BenchmarkDiskInitialSync(b *testing.B) {
	mib := 2048
	if v, err := strconv.Atoi(os.Getenv("RESILIRE_BENCH_DISK_MIB")); err == nil && v > 0 {
		mib = v
	}
	size := int64(mib) << 20
	dir := b.TempDir()
	pimg, bimg := filepath.Join(dir, "p.img"), filepath.Join(dir, "b.img")
	f, err := os.Create(pimg)
	if err != nil {
		b.Fatal(err)
	}
	r := rand.New(rand.NewPCG(1, 1))
	chunk := make([]byte, 8<<20)
	for off := int64(0); off < size; off += int64(len(chunk)) {
		for i := 0; i < len(chunk); i += 8 {
			v := r.Uint64()
			for k := 0; k < 8; k++ {
				chunk[i+k] = byte(v >> (8 * k))
			}
		}
		if _, err := f.WriteAt(chunk, off); err != nil {
			b.Fatal(err)
		}
	}
	f.Close()
	if err := os.WriteFile(bimg, nil, 0o600); err != nil {
		b.Fatal(err)
	}
	if err := os.Truncate(bimg, size); err != nil {
		b.Fatal(err)
	}
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		x, err := disk.NewExport(pimg, filepath.Join(dir, "nbd.sock"), nil)
		if err != nil {
			b.Fatal(err)
		}
		rd, err := disk.OpenReplica(bimg, disk.ReplicaOptions{})
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { rd.Close() }) // after its backup stopped (cleanups run in reverse)
		g := &diskGuest{Domain: sim.NewDomain(sim.Config{Name: "vm1", MemSize: 16 << 20, Seed: 7, WritesPerMs: 50, HotPages: 512})}
		g.Start()
		replica := sim.NewReplica(g.MemorySize())
		bk, addr, _ := startBackupTB(b, checkpointer.BackupConfig{VM: "vm1", Replica: replica, Standby: &fakeStandby{replica: replica},
			Codec: codec.DefaultFGBI(), Disk: rd, HeartbeatTimeout: 10 * time.Second,
			Failover: checkpointer.FailoverConfig{Fence: checkpointer.CommandFencer{Command: "true"}}})
		var maxPause, epochs atomic.Int64
		p, err := checkpointer.NewPrimary(checkpointer.PrimaryConfig{Domain: g, Output: checkpointer.NewEpochCounterAt(1),
			Codec: codec.DefaultFGBI(), Dial: dialer(addr), Interval: 50 * time.Millisecond, HeartbeatTimeout: 10 * time.Second,
			AckTimeout: time.Minute, Pipeline: true, Disk: x,
			OnEpoch: func(s checkpointer.EpochStats) {
				epochs.Add(1)
				if int64(s.Pause) > maxPause.Load() {
					maxPause.Store(int64(s.Pause))
				}
			}})
		if err != nil {
			b.Fatal(err)
		}
		c, err := nbd.Dial(filepath.Join(dir, "nbd.sock"))
		if err != nil {
			b.Fatal(err)
		}
		stop := make(chan struct{})
		werr := make(chan error, 1)
		go func() { werr <- g.write(c, 3, stop) }()
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		b.StartTimer()
		start := time.Now()
		go func() { done <- p.Run(ctx) }()
		for e, _ := bk.Committed(); e == 0; e, _ = bk.Committed() {
			time.Sleep(5 * time.Millisecond)
		}
		took := time.Since(start)
		b.StopTimer()
		// The first epochs after the copy: their pauses are the guest's
		// only stops (the copy itself ran with the guest running).
		for t0 := time.Now(); epochs.Load() < 5 && time.Since(t0) < 20*time.Second; {
			time.Sleep(5 * time.Millisecond)
		}
		close(stop)
		if err := <-werr; err != nil {
			b.Fatal(err)
		}
		cancel()
		if err := <-done; err != nil {
			b.Fatal(err)
		}
		c.Close()
		g.Stop()
		x.Close()
		b.ReportMetric(took.Seconds(), "sync-s")
		b.ReportMetric(float64(size)/took.Seconds()/1e6, "sync-MB/s")
		b.ReportMetric(float64(maxPause.Load())/1e6, "max-pause-ms")
	}
}
