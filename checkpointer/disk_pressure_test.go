// SPDX-License-Identifier: Apache-2.0

package checkpointer_test

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/resilire/resilire/checkpointer"
	"github.com/resilire/resilire/checkpointer/codec"
	"github.com/resilire/resilire/checkpointer/disk"
	"github.com/resilire/resilire/checkpointer/sim"
	"github.com/resilire/resilire/testenv/nbd"
)

// An epoch whose disk writes reach the export's bound is cut at once, long
// before its interval: what one cut holds in memory (and the backup
// stages) stays near the bound. Without a bound, the same writes wait for
// the interval (the control).
func TestDiskPressureCutsEarly(t *testing.T) {
	for _, bound := range []int64{64 << 10, 0} {
		epochs := diskPressureRun(t, bound)
		t.Logf("bound %d: %d epochs after the first", bound, len(epochs))
		if bound == 0 {
			if len(epochs) != 0 {
				t.Fatalf("no bound: %d early epochs with a 1 h interval", len(epochs))
			}
			continue
		}
		if len(epochs) < 3 {
			t.Fatalf("bound %d: only %d epochs in the run: no early cut", bound, len(epochs))
		}
		for _, n := range epochs {
			// The writer keeps going while the cut is being taken: a few
			// of its 4 KiB writes may land beyond the bound.
			if n > bound+16*disk.BlockSize {
				t.Fatalf("an epoch carried %d disk bytes, bound %d", n, bound)
			}
		}
	}
}

// diskPressureRun protects a guest that writes 4 KiB blocks for 2 s with a
// 1 h interval and returns the disk bytes of each epoch after the first.
func diskPressureRun(t *testing.T, bound int64) []int64 {
	dir := t.TempDir()
	pimg, bimg := filepath.Join(dir, "p.img"), filepath.Join(dir, "b.img")
	for _, p := range []string{pimg, bimg} {
		if err := os.WriteFile(p, make([]byte, testDisk), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	x, err := disk.NewExport(pimg, filepath.Join(dir, "nbd.sock"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer x.Close()
	x.SetMaxEpochBytes(bound)
	rd, err := disk.OpenReplica(bimg, disk.ReplicaOptions{})
	if err != nil {
		t.Fatal(err)
	}
	// Closed after the backup has stopped (cleanups run last in, first
	// out): its session may still be committing when this run returns.
	t.Cleanup(func() { rd.Close() })
	g := &diskGuest{Domain: sim.NewDomain(sim.Config{Name: "vm1", MemSize: 1 << 20, Seed: 9, WritesPerMs: 5, HotPages: 16})}
	g.Start()
	defer g.Stop()
	replica := sim.NewReplica(g.MemorySize())
	_, addr, _ := startBackup(t, checkpointer.BackupConfig{VM: "vm1", Replica: replica, Standby: &fakeStandby{replica: replica}, Codec: codec.Raw{},
		Disk: rd, HeartbeatInterval: 20 * time.Millisecond, HeartbeatTimeout: 15 * time.Second})
	var got []int64
	var n atomic.Int32
	epochs := make(chan int64, 1024)
	p, err := checkpointer.NewPrimary(checkpointer.PrimaryConfig{Domain: g, Output: checkpointer.NewEpochCounterAt(1), Codec: codec.Raw{},
		Dial: dialer(addr), Interval: time.Hour, HeartbeatInterval: 20 * time.Millisecond, HeartbeatTimeout: 15 * time.Second,
		PrecopyRounds: -1, Disk: x, Pipeline: true, OnEpoch: func(s checkpointer.EpochStats) {
			if n.Add(1) > 1 {
				epochs <- s.DiskBytes
			}
		}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	waitFor(t, 20*time.Second, "the first checkpoint", func() bool { return n.Load() >= 1 })
	c, err := nbd.Dial(filepath.Join(dir, "nbd.sock"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	blk := bytes.Repeat([]byte{7}, disk.BlockSize)
	for i, end := 0, time.Now().Add(2*time.Second); time.Now().Before(end); i++ {
		g.gate.RLock()
		err := c.WriteAt(blk, int64(i%(testDisk/disk.BlockSize))*disk.BlockSize, false)
		g.gate.RUnlock()
		if err != nil {
			t.Fatal(err)
		}
		time.Sleep(100 * time.Microsecond)
	}
	cancel()
	if err := recvWithin(t, done, 10*time.Second, "primary"); err != nil {
		t.Fatalf("primary: %v", err)
	}
	close(epochs)
	for e := range epochs {
		got = append(got, e)
	}
	return got
}
