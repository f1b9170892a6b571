// SPDX-License-Identifier: Apache-2.0

package checkpointer_test

import (
	"context"
	"errors"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/resilire/resilire/checkpointer"
	"github.com/resilire/resilire/checkpointer/codec"
	"github.com/resilire/resilire/checkpointer/disk"
	"github.com/resilire/resilire/checkpointer/sim"
	"github.com/resilire/resilire/testenv/nbd"
)

// BenchmarkDiskGuest: a simulated guest writes its disk through the NBD
// export, unprotected (no checkpoints), protected without disk
// replication (memory only: the unsafe mode) and protected with it, at
// 50 ms epochs. Rows side by side in one run: write throughput (64 KiB
// writes) and write+flush latency (4 KiB), mean pause, and disk bytes per
// epoch raw and on the wire (DISK records, S2 where it pays).
//
//	go test -run '^$' -bench BenchmarkDiskGuest -benchtime 2s ./checkpointer/
func BenchmarkDiskGuest(b *testing.B) {
	for _, mode := range []string{"unprotected", "protected-no-disk", "protected", "protected-copy-in-pause"} {
		for _, op := range []struct {
			name  string
			size  int
			flush bool
		}{{"write64k", 64 << 10, false}, {"write4k+flush", 4 << 10, true}} {
			b.Run(mode+"/"+op.name, func(b *testing.B) { benchDiskGuest(b, mode, op.size, op.flush) })
		}
	}
}

func benchDiskGuest(b *testing.B, mode string, size int, flush bool) {
	dir := b.TempDir()
	const imgSize = 64 << 20
	pimg, bimg := filepath.Join(dir, "p.img"), filepath.Join(dir, "b.img")
	for _, p := range []string{pimg, bimg} {
		if err := os.WriteFile(p, nil, 0o600); err != nil {
			b.Fatal(err)
		}
		if err := os.Truncate(p, imgSize); err != nil {
			b.Fatal(err)
		}
	}
	x, err := disk.NewExport(pimg, filepath.Join(dir, "nbd.sock"), nil)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { x.Close() })
	g := &diskGuest{Domain: sim.NewDomain(sim.Config{Name: "vm1", MemSize: 16 << 20, Seed: 7, WritesPerMs: 50, HotPages: 512})}
	g.Start()
	b.Cleanup(g.Stop)
	var pauses, pauseNs, diskWire, diskRaw atomic.Int64
	if mode != "unprotected" {
		replica := sim.NewReplica(g.MemorySize())
		bcfg := checkpointer.BackupConfig{VM: "vm1", Replica: replica, Standby: &fakeStandby{replica: replica}, Codec: codec.DefaultFGBI(),
			HeartbeatTimeout: 5 * time.Second, Failover: checkpointer.FailoverConfig{Fence: checkpointer.CommandFencer{Command: "true"}}}
		pcfg := checkpointer.PrimaryConfig{Domain: g, Output: checkpointer.NewEpochCounterAt(1), Codec: codec.DefaultFGBI(),
			Interval: 50 * time.Millisecond, HeartbeatTimeout: 5 * time.Second, Pipeline: true,
			OnEpoch: func(s checkpointer.EpochStats) {
				pauses.Add(1)
				pauseNs.Add(int64(s.Pause))
				diskWire.Add(s.DiskWireBytes)
				diskRaw.Add(s.DiskBytes)
			}}
		if strings.HasPrefix(mode, "protected") && mode != "protected-no-disk" {
			rd, err := disk.OpenReplica(bimg, disk.ReplicaOptions{})
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { rd.Close() })
			bcfg.Disk, pcfg.Disk = rd, x
			if mode == "protected-copy-in-pause" {
				pcfg.Disk = eagerCut{x}
			}
		}
		bk, addr, _ := startBackupTB(b, bcfg)
		pcfg.Dial = dialer(addr)
		p, err := checkpointer.NewPrimary(pcfg)
		if err != nil {
			b.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- p.Run(ctx) }()
		b.Cleanup(func() {
			cancel()
			if err := <-done; err != nil {
				b.Error(err)
			}
		})
		deadline := time.Now().Add(60 * time.Second)
		for st, _ := bk.Committed(); st == 0; st, _ = bk.Committed() {
			if time.Now().After(deadline) {
				b.Fatal("never protected")
			}
			time.Sleep(10 * time.Millisecond)
		}
		pauses.Store(0)
		pauseNs.Store(0)
		diskWire.Store(0)
		diskRaw.Store(0)
	}
	c, err := nbd.Dial(filepath.Join(dir, "nbd.sock"))
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	// Random contents, a different slice of a 64 MiB pool for every
	// write: the S2 columns are the incompressible worst case (the QEMU
	// test reports the ratio of a real ext4 workload).
	pool := make([]byte, 64<<20)
	r := rand.New(rand.NewPCG(uint64(size), 1))
	for i := 0; i < len(pool); i += 8 {
		v := r.Uint64()
		for k := 0; k < 8; k++ {
			pool[i+k] = byte(v >> (8 * k))
		}
	}
	b.SetBytes(int64(size))
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		po := (i * size) % (len(pool) - size)
		buf := pool[po : po+size]
		g.gate.RLock()
		err := c.WriteAt(buf, int64(i*size)%(imgSize-int64(size)), false)
		if err == nil && flush {
			err = c.Flush()
		}
		g.gate.RUnlock()
		if err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	if n := pauses.Load(); n > 0 {
		b.ReportMetric(float64(pauseNs.Load())/float64(n)/1e3, "pause-us")
	}
	if n := pauses.Load(); n > 0 && pcfgHasDisk(mode) {
		b.ReportMetric(float64(diskRaw.Load())/float64(n), "disk-raw-B/epoch")
		b.ReportMetric(float64(diskWire.Load())/float64(n), "disk-wire-B/epoch")
	}
}

// startBackupTB is startBackup for benchmarks.
func startBackupTB(tb testing.TB, cfg checkpointer.BackupConfig) (*checkpointer.Backup, string, <-chan error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	cfg.Listener = ln
	bk, err := checkpointer.NewBackup(cfg)
	if err != nil {
		tb.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- bk.Serve(ctx) }()
	tb.Cleanup(func() {
		cancel()
		if err := <-errc; err != nil && !errors.Is(err, context.Canceled) {
			tb.Logf("backup: %v", err)
		}
	})
	return bk, ln.Addr().String(), errc
}

// eagerCut reads the cut's blocks inside the pause, as before copy-on-write
// (the baseline of the protected-copy-in-pause rows).
type eagerCut struct{ *disk.Export }

func (e eagerCut) CutDeferred(epoch uint64) (*disk.Delta, error) { return e.Cut(epoch) }

func pcfgHasDisk(mode string) bool { return mode == "protected" || mode == "protected-copy-in-pause" }
