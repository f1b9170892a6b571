// SPDX-License-Identifier: Apache-2.0

package qemu_test

import (
	"context"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/klauspost/compress/s2"

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

// drainCheck wraps the QEMU domain and checks, at every epoch, QEMU's
// claim that stop drains the disk: no request is in flight when stop
// returns and no write reaches the export until cont.
type drainCheck struct {
	*qemu.Domain
	x                 *disk.Export
	mu                sync.Mutex
	writesAtPause     uint64
	pauses, busy      int
	writesWhilePaused int
	flushesInPause    uint64
	flushesAtPause    uint64
}

func (d *drainCheck) Pause(ctx context.Context) error {
	err := d.Domain.Pause(ctx)
	st := d.x.Stats()
	d.mu.Lock()
	d.writesAtPause, d.flushesAtPause = st.Writes, st.Flushes
	if st.InFlight != 0 {
		d.busy++
	}
	d.mu.Unlock()
	return err
}

func (d *drainCheck) Resume(ctx context.Context) error {
	st := d.x.Stats()
	d.mu.Lock()
	d.pauses++
	if st.Writes != d.writesAtPause || st.InFlight != 0 {
		d.writesWhilePaused++
	}
	d.flushesInPause += st.Flushes - d.flushesAtPause
	d.mu.Unlock()
	return d.Domain.Resume(ctx)
}

// s2Meter wraps the export and measures what S2 would make of each
// epoch's disk data (measurement only: the records travel raw).
type s2Meter struct {
	*disk.Export
	raw, enc, epochs atomic.Int64
}

func (m *s2Meter) Cut(e uint64) (*disk.Delta, error) {
	d, err := m.Export.Cut(e)
	if err == nil && m.epochs.Add(1) > 1 { // the first consistent one follows the copy
		m.raw.Add(int64(d.Bytes()))
		m.enc.Add(int64(len(s2.Encode(nil, d.Data))))
	}
	return d, err
}

// consoleOutput stands in for the network output commit (this guest has
// no NIC; its output is its console): at each Advance, with the guest
// paused, it records the last file the guest reported durable.
type consoleOutput struct {
	serial   string
	mu       sync.Mutex
	next     uint64
	wroteAt  map[uint64]int
	released uint64
}

func (o *consoleOutput) Advance() (uint64, error) {
	b, _ := os.ReadFile(o.serial)
	o.mu.Lock()
	defer o.mu.Unlock()
	o.next++
	o.wroteAt[o.next] = diskload.LastWrote(b)
	return o.next, nil
}

func (o *consoleOutput) Release(e uint64) error {
	o.mu.Lock()
	o.released = e
	o.mu.Unlock()
	return nil
}

func (o *consoleOutput) Discard() error { return nil }

// nopStandby: this test checks the backup's disk image, not activation.
type nopStandby struct{}

func (nopStandby) Activate(context.Context, []byte) error { return nil }
func (nopStandby) Close() error                           { return nil }

func run(_ *testing.T, name string, args ...string) (string, error) {
	out, err := exec.Command(name, args...).CombinedOutput()
	return string(out), err
}

// TestDiskFollowsCheckpoints boots the test guest with a real ext4 disk
// served by the export over NBD; the guest writes files with fsync while
// the engine checkpoints it to a backup over TCP; then the primary's QEMU
// is killed. The backup's image must hold every file the guest reported
// durable before the last committed epoch's pause, and pass e2fsck once
// its ext4 journal is replayed (as the guest's mount would). Every epoch
// also checks QEMU's stop drain. The negative control runs the same with
// disk replication off: files are missing.
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
	qd, err := qemu.NewDomain(vm, qemu.DomainOptions{})
	if err != nil {
		t.Fatal(err)
	}
	dom := &drainCheck{Domain: qd, x: x}

	replica, err := qemu.CreateReplica(shmPrefix+"disk-backup.ram", dom.MemorySize())
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
	if rd != nil {
		bcfg.Disk = rd
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
	var diskBytes, epochs, pause int64
	pcfg.OnEpoch = func(s checkpointer.EpochStats) {
		if epochs > 0 { // the first carries the whole disk and memory
			diskBytes += s.DiskBytes
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

	deadline := time.Now().Add(150 * time.Second)
	for {
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
	// The primary host dies.
	if err := vm.Kill(); err != nil {
		t.Fatal(err)
	}
	pcancel()
	t.Logf("primary after its QEMU was killed: %v", <-pdone)
	bcancel()
	if err := <-bdone; err != nil && !errors.Is(err, context.Canceled) {
		t.Logf("backup: %v", err)
	}
	if rd != nil {
		rd.Close()
	}
	committed, _ := b.Committed()
	out.mu.Lock()
	expect := out.wroteAt[committed]
	out.mu.Unlock()
	dom.mu.Lock()
	t.Logf("%d epochs, backup committed %d; guest reported %d files durable by its pause; disk %d bytes in %d epochs after the first (pause mean %v); "+
		"drain: %d pauses, %d with a request in flight, %d with writes while paused, %d flushes during pauses",
		epochs, committed, expect, diskBytes, epochs-1, time.Duration(pause/max(epochs-1, 1)), dom.pauses, dom.busy, dom.writesWhilePaused, dom.flushesInPause)
	if dom.busy != 0 || dom.writesWhilePaused != 0 || x.Stats().BusyCuts != 0 {
		t.Errorf("QEMU stop did not drain the disk: %d pauses with a request in flight, %d with writes while paused", dom.busy, dom.writesWhilePaused)
	}
	dom.mu.Unlock()
	if n := meter.epochs.Load() - 1; n > 0 {
		t.Logf("disk bytes per epoch: raw %d, S2 %d (ratio %.2f)", meter.raw.Load()/n, meter.enc.Load()/n,
			float64(meter.raw.Load())/float64(max(meter.enc.Load(), 1)))
	}

	missing := checkImage(t, bimg, expect)
	if replicate && missing != 0 {
		t.Fatalf("backup image lacks %d of the %d files the guest made durable before committed epoch %d", missing, expect, committed)
	}
	if !replicate {
		if missing == 0 {
			t.Fatalf("negative control: without disk replication the backup still holds all %d files: the check proves nothing", expect)
		}
		t.Logf("negative control: replication off, the backup lacks %d of %d durable files", missing, expect)
	}
}

// checkImage replays the ext4 journal of a copy of img (what a mount
// does), requires e2fsck -fn to pass, and returns how many of files
// 1..n are missing or wrong.
func checkImage(t *testing.T, img string, n int) int {
	t.Helper()
	raw, rawErr := run(t, "e2fsck", "-fn", img)
	t.Logf("e2fsck -fn of the image as left (journal not replayed): %v", rawErr)
	cp := img + ".check"
	if out, err := run(t, "cp", "--sparse=always", img, cp); err != nil {
		t.Fatalf("copy: %v: %s", err, out)
	}
	if out, err := run(t, "e2fsck", "-E", "journal_only", "-y", cp); err != nil {
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() > 1 {
			t.Fatalf("journal replay: %v: %s", err, out)
		}
	}
	if out, err := run(t, "e2fsck", "-fn", cp); err != nil {
		t.Fatalf("e2fsck -fn after journal replay: %v:\n%s\n(as left: %s)", err, out, raw)
	}
	dump := filepath.Join(filepath.Dir(img), "dump")
	if err := os.MkdirAll(dump, 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := run(t, "debugfs", "-R", "rdump / "+dump, cp); err != nil {
		t.Fatalf("debugfs rdump: %v: %s", err, out)
	}
	missing := 0
	for i := 1; i <= n; i++ {
		b, err := os.ReadFile(filepath.Join(dump, diskload.Name(i)))
		if err != nil || string(b) != string(diskload.Content(i)) {
			missing++
		}
	}
	return missing
}
