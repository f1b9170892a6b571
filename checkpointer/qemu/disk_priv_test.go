// SPDX-License-Identifier: Apache-2.0

package qemu_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/resilire/resilire/checkpointer"
	"github.com/resilire/resilire/checkpointer/codec"
	"github.com/resilire/resilire/checkpointer/disk"
	"github.com/resilire/resilire/checkpointer/qemu"
	"github.com/resilire/resilire/checkpointer/wire"
	"github.com/resilire/resilire/testenv"
	"github.com/resilire/resilire/testenv/guest"
	"github.com/resilire/resilire/testenv/guest/diskload"
)

const diskImageSize = 64 << 20

// TestDiskFollowsCheckpoints boots the test guest with a real ext4 disk
// served by the export over NBD; the guest writes files with fsync while
// the engine checkpoints it to a backup over TCP; then the primary's QEMU
// is killed. The backup's image must hold every file the guest reported
// durable before the last committed epoch's pause, and pass e2fsck once
// its ext4 journal is replayed (as the guest's mount would). Every epoch
// also checks QEMU's stop drain. With replication, the backup then fails
// over: its warm standby QEMU resumes the guest on the backup's image
// (served by a backup-side export), the guest goes on writing files, and
// the image then holds every file either QEMU reported. The negative
// control runs the same with disk replication off: files are missing.
func TestDiskFollowsCheckpoints(t *testing.T) {
	testenv.RequirePrivileged(t)
	for _, replicate := range []bool{true, false} {
		name := "replicated"
		if !replicate {
			name = "unsafe-no-disk-replication"
		}
		t.Run(name, func(t *testing.T) { testDiskFollows(t, replicate) })
	}
}

func testDiskFollows(t *testing.T, replicate bool) {
	ctx, cancelAll := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancelAll()
	assets, err := guest.Build(ctx, guest.DefaultDir())
	if err != nil {
		t.Fatalf("guest assets: %v", err)
	}
	dir := t.TempDir()
	pimg, bimg := filepath.Join(dir, "primary.img"), filepath.Join(dir, "backup.img")
	if err := os.WriteFile(pimg, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(pimg, diskImageSize); err != nil {
		t.Fatal(err)
	}
	if out, err := run(t, "mkfs.ext4", "-q", "-F", "-b", "4096", "-E", "lazy_itable_init=0,lazy_journal_init=0", pimg); err != nil {
		t.Fatalf("mkfs.ext4: %v: %s", err, out)
	}
	if out, err := run(t, "cp", "--sparse=always", pimg, bimg); err != nil {
		t.Fatalf("copy image: %v: %s", err, out)
	}
	x, err := disk.NewExport(pimg, filepath.Join(dir, "nbd.sock"), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { x.Close() })
	cfg := qemu.Config{Name: "rqm-disk", MemPath: shmPrefix + "disk-primary.ram", Kernel: assets.Kernel, Initrd: assets.Initrd,
		Append: qemu.DefaultAppend + " " + diskload.Cmdline, QMPPath: filepath.Join(dir, "qmp"), SerialPath: filepath.Join(dir, "serial"),
		DiskSocket: filepath.Join(dir, "nbd.sock"), KillWithParent: true, KVM: os.Getenv(guest.KVMEnv) == "1"}
	vm, err := qemu.Start(ctx, cfg, false)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = vm.Kill(); os.Remove(cfg.MemPath) })
	if err := vm.WaitSerial(ctx, diskload.MountedLine); err != nil {
		t.Fatal(err)
	}
	// The guest's rate of fsync'd files before protection (benchmark
	// figure only, no assertion).
	rate := func(d time.Duration) float64 {
		c0, _ := os.ReadFile(cfg.SerialPath)
		time.Sleep(d)
		c1, _ := os.ReadFile(cfg.SerialPath)
		return float64(diskload.LastWrote(c1)-diskload.LastWrote(c0)) / d.Seconds()
	}
	unprotected := rate(3 * time.Second)
	mirrored := -1.0
	if replicate {
		mirrored = mirrorRate(t, ctx, vm, dir, rate)
	}
	qd, err := qemu.NewDomain(vm, qemu.DomainOptions{})
	if err != nil {
		t.Fatal(err)
	}
	dom := &drainCheck{Domain: qd, x: x}

	scfg := cfg.ForHost(cfg.Name, shmPrefix+"disk-backup.ram", "", filepath.Join(dir, "qmp-b"), filepath.Join(dir, "serial-b"), "")
	scfg.DiskSocket = filepath.Join(dir, "nbd-b.sock")
	replica, err := qemu.CreateReplica(scfg.MemPath, dom.MemorySize())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { replica.Close(); _ = replica.Remove() })
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	bcfg := checkpointer.BackupConfig{VM: cfg.Name, Replica: replica, Standby: nopStandby{}, Codec: codec.DefaultFGBI(),
		Listener: ln, HeartbeatTimeout: 3 * time.Second, Failover: checkpointer.FailoverConfig{UnsafeNoFence: true}}
	var rd *disk.Replica
	if replicate {
		if rd, err = disk.OpenReplica(bimg, disk.ReplicaOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	var sb *snapStandby
	if rd != nil {
		bcfg.Disk = rd
		bx, err := disk.NewExport(bimg, scfg.DiskSocket, nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { bx.Close() })
		s, err := qemu.StartStandby(ctx, scfg)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = s.VM().Kill() })
		sb = &snapStandby{Standby: s, img: bimg}
		bcfg.Standby = sb
	}
	b, err := checkpointer.NewBackup(bcfg)
	if err != nil {
		t.Fatal(err)
	}
	bctx, bcancel := context.WithCancel(ctx)
	bdone := make(chan error, 1)
	go func() { bdone <- b.Serve(bctx) }()

	out := &consoleOutput{serial: cfg.SerialPath, wroteAt: map[uint64]int{}}
	dial, err := wire.Dialer(ln.Addr().String(), wire.TLSFiles{}, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	pcfg := checkpointer.PrimaryConfig{Domain: dom, Output: out, Codec: codec.DefaultFGBI(), Dial: dial,
		Interval: 100 * time.Millisecond, HeartbeatTimeout: 3 * time.Second, AckTimeout: 30 * time.Second}
	meter := &s2Meter{Export: x}
	if replicate {
		pcfg.Disk = meter
	}
	var diskBytes, diskWire, epochs, pause int64
	pcfg.OnEpoch = func(s checkpointer.EpochStats) {
		if epochs > 0 { // the first carries the whole disk and memory
			diskBytes += s.DiskBytes
			diskWire += s.DiskWireBytes
			pause += int64(s.Pause)
		}
		epochs++
	}
	p, err := checkpointer.NewPrimary(pcfg)
	if err != nil {
		t.Fatal(err)
	}
	pctx, pcancel := context.WithCancel(ctx)
	pdone := make(chan error, 1)
	go func() { pdone <- p.Run(pctx) }()

	var protStart time.Time
	var protFrom int
	deadline := time.Now().Add(150 * time.Second)
	for {
		if c, _ := os.ReadFile(cfg.SerialPath); protStart.IsZero() && p.Status().State == checkpointer.StateProtected {
			protStart, protFrom = time.Now(), diskload.LastWrote(c)
		}
		out.mu.Lock()
		rel, wrote := out.released, out.wroteAt[out.released]
		out.mu.Unlock()
		if rel >= 20 && wrote >= 15 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after 150 s: released epoch %d, guest reported %d files durable by then", rel, wrote)
		}
		time.Sleep(100 * time.Millisecond)
	}
	c, _ := os.ReadFile(cfg.SerialPath)
	t.Logf("guest fsync'd 12 KiB files per second: unprotected %.1f, protected %.1f (TCG, %v epochs)",
		unprotected, float64(diskload.LastWrote(c)-protFrom)/time.Since(protStart).Seconds(), pcfg.Interval)
	if mirrored >= 0 {
		t.Logf("same guest under QEMU drive-mirror, write-blocking, to a local NBD target (disk only, no memory, no output commit): %.1f", mirrored)
	}
	// The primary host dies.
	if err := vm.Kill(); err != nil {
		t.Fatal(err)
	}
	pcancel()
	t.Logf("primary after its QEMU was killed: %v", <-pdone)
	committed, _ := b.Committed()
	out.mu.Lock()
	expect := out.wroteAt[committed]
	out.mu.Unlock()
	after := 0
	if sb != nil { // the backup fails over; the guest goes on writing there
		svm := sb.VM()
		deadline := time.Now().Add(90 * time.Second)
		for {
			c, _ := os.ReadFile(scfg.SerialPath)
			if after = diskload.LastWrote(c); after >= expect+10 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("after failover the guest reported file %d (before: %d); console: %q", after, expect, c)
			}
			time.Sleep(100 * time.Millisecond)
		}
		if err := svm.Kill(); err != nil {
			t.Fatal(err)
		}
		c, _ := os.ReadFile(scfg.SerialPath)
		after = diskload.LastWrote(c)
		if sb.err != nil {
			t.Fatalf("copy of the image at failover: %v", sb.err)
		}
	}
	bcancel()
	if err := <-bdone; err != nil && !errors.Is(err, context.Canceled) {
		t.Logf("backup: %v", err)
	}
	if rd != nil {
		rd.Close()
	}
	dom.mu.Lock()
	t.Logf("%d epochs, backup committed %d; guest reported %d files durable by its pause; disk %d bytes in %d epochs after the first (pause mean %v); "+
		"drain: %d pauses, %d with a request in flight, %d with writes while paused, %d flushes during pauses",
		epochs, committed, expect, diskBytes, epochs-1, time.Duration(pause/max(epochs-1, 1)), dom.pauses, dom.busy, dom.writesWhilePaused, dom.flushesInPause)
	if dom.busy != 0 || dom.writesWhilePaused != 0 || x.Stats().BusyCuts != 0 {
		t.Errorf("QEMU stop did not drain the disk: %d pauses with a request in flight, %d with writes while paused", dom.busy, dom.writesWhilePaused)
	}
	dom.mu.Unlock()
	if n := meter.epochs.Load() - 1; n > 0 && replicate {
		t.Logf("disk bytes per epoch: raw %d, S2 of the whole epoch %d (ratio %.2f), DISK records on the wire %d (ratio %.2f)",
			meter.raw.Load()/n, meter.enc.Load()/n, float64(meter.raw.Load())/float64(max(meter.enc.Load(), 1)),
			diskWire/max(epochs-1, 1), float64(diskBytes)/float64(max(diskWire, 1)))
	}

	if replicate {
		if missing := checkImage(t, bimg+".failover", expect); missing != 0 {
			t.Fatalf("backup image at failover lacks %d of the %d files the guest made durable before committed epoch %d", missing, expect, committed)
		}
		if missing := checkImage(t, bimg, after); missing != 0 {
			t.Fatalf("after failover and %d more files, the image lacks %d of %d", after-expect, missing, after)
		}
		t.Logf("failover: the resumed guest wrote files %d..%d on the backup's image; all %d present, e2fsck clean", expect+1, after, after)
		return
	}
	missing := checkImage(t, bimg, expect)
	if !replicate {
		if missing == 0 {
			t.Fatalf("negative control: without disk replication the backup still holds all %d files: the check proves nothing", expect)
		}
		t.Logf("negative control: replication off, the backup lacks %d of %d durable files", missing, expect)
	}
}

// mirrorRate measures the guest's fsync'd-file rate while QEMU's own
// drive-mirror, in write-blocking mode, copies its disk to an NBD target
// on this host (the suggested comparison: a guest write completes
// only once the target has it). It checks the comparison is sound (the
// target equals the disk once the guest is stopped), then removes the
// mirror and lets the guest run on.
func mirrorRate(t *testing.T, ctx context.Context, vm *qemu.VM, dir string, rate func(time.Duration) float64) float64 {
	t.Helper()
	timg := filepath.Join(dir, "mirror.img")
	if err := os.WriteFile(timg, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(timg, diskImageSize); err != nil {
		t.Fatal(err)
	}
	tx, err := disk.NewExport(timg, filepath.Join(dir, "mirror.sock"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Close()
	qmp := func(cmd string, args any) json.RawMessage {
		t.Helper()
		r, err := qemu.QMP(ctx, vm, cmd, args)
		if err != nil {
			t.Fatalf("%s: %v", cmd, err)
		}
		return r
	}
	qmp("blockdev-add", map[string]any{"driver": "nbd", "node-name": "mirror0",
		"server": map[string]any{"type": "unix", "path": filepath.Join(dir, "mirror.sock")}})
	qmp("blockdev-mirror", map[string]any{"job-id": "m0", "device": "disk0", "target": "mirror0", "sync": "full", "copy-mode": "write-blocking"})
	deadline := time.Now().Add(60 * time.Second)
	for {
		var jobs []struct {
			Device string `json:"device"`
			Ready  bool   `json:"ready"`
		}
		if err := json.Unmarshal(qmp("query-block-jobs", nil), &jobs); err != nil {
			t.Fatal(err)
		}
		if len(jobs) == 1 && jobs[0].Ready {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("drive-mirror not ready after 60 s: %+v", jobs)
		}
		time.Sleep(100 * time.Millisecond)
	}
	r := rate(3 * time.Second)
	// Stopped, the guest's disk and the mirror must be equal: the figure
	// above is a real synchronous mirror's.
	qmp("stop", nil)
	src, _ := os.ReadFile(filepath.Join(dir, "primary.img"))
	dst, _ := os.ReadFile(timg)
	if !bytes.Equal(src, dst) {
		t.Fatal("drive-mirror target differs from the disk with the guest stopped: the comparison is unsound")
	}
	qmp("block-job-cancel", map[string]any{"device": "m0"})
	for deadline := time.Now().Add(30 * time.Second); ; {
		var jobs []json.RawMessage
		if err := json.Unmarshal(qmp("query-block-jobs", nil), &jobs); err != nil {
			t.Fatal(err)
		}
		if len(jobs) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("drive-mirror job still there 30 s after its cancel")
		}
		time.Sleep(50 * time.Millisecond)
	}
	qmp("blockdev-del", map[string]any{"node-name": "mirror0"})
	qmp("cont", nil)
	return r
}
