// SPDX-License-Identifier: Apache-2.0

package checkpointer_test

import (
	"context"
	"crypto/sha256"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/resilire/resilire/checkpointer"
	"github.com/resilire/resilire/checkpointer/codec"
	"github.com/resilire/resilire/checkpointer/disk"
	"github.com/resilire/resilire/checkpointer/sim"
	"github.com/resilire/resilire/testenv/nbd"
)

const testDisk = 4 << 20

// diskGuest is a simulated guest that also writes its disk through the
// NBD export, the way QEMU does for a real guest. Like QEMU's stop, Pause
// returns only once no disk request is in flight: the writer holds gate
// for reading around each request.
type diskGuest struct {
	*sim.Domain
	gate sync.RWMutex
}

func (g *diskGuest) Pause(ctx context.Context) error { g.gate.Lock(); return g.Domain.Pause(ctx) }
func (g *diskGuest) Resume(ctx context.Context) error {
	err := g.Domain.Resume(ctx)
	g.gate.Unlock()
	return err
}

// write runs random writes (512 B to 64 KiB, some FUA, some flushes)
// until stop closes.
func (g *diskGuest) write(c *nbd.Client, seed uint64, stop <-chan struct{}) error {
	r := rand.New(rand.NewPCG(seed, 5))
	buf := make([]byte, 64<<10)
	for i := 0; ; i++ {
		select {
		case <-stop:
			return nil
		default:
		}
		n := 512 * (1 + r.IntN(128))
		off := int64(512 * r.IntN((testDisk-n)/512))
		for j := range buf[:n] {
			buf[j] = byte(r.Uint32())
		}
		g.gate.RLock()
		err := c.WriteAt(buf[:n], off, i%7 == 0)
		if err == nil && i%11 == 0 {
			err = c.Flush()
		}
		g.gate.RUnlock()
		if err != nil {
			return err
		}
		time.Sleep(200 * time.Microsecond)
	}
}

// diskOutput is recOutput plus the disk: at Advance it hashes the
// primary's image, at Release(e) it compares the backup's image with it.
type diskOutput struct {
	*recOutput
	primary, backup string
	mu              sync.Mutex
	at              map[uint64][32]byte
	matched, differ int
}

func hashFile(p string) [32]byte {
	b, err := os.ReadFile(p)
	if err != nil {
		return [32]byte{}
	}
	return sha256.Sum256(b)
}

func (o *diskOutput) Advance() (uint64, error) {
	e, err := o.recOutput.Advance()
	o.mu.Lock()
	o.at[e] = hashFile(o.primary)
	o.mu.Unlock()
	return e, err
}

func (o *diskOutput) Release(e uint64) error {
	o.mu.Lock()
	if hashFile(o.backup) == o.at[e] {
		o.matched++
	} else {
		o.differ++
	}
	o.mu.Unlock()
	return o.recOutput.Release(e)
}

// runDiskPair protects a simulated guest writing its disk until want
// epochs were released. With replicate false, neither side has a disk
// (replication off): the negative control. With cuts > 0 the connection
// is cut that many times on the way (the primary reconnects and
// resynchronises the disk).
func runDiskPair(t *testing.T, cdc codec.Codec, pipeline, replicate bool, want, cuts int) *diskOutput {
	t.Helper()
	dir := t.TempDir()
	pimg, bimg := filepath.Join(dir, "primary.img"), filepath.Join(dir, "backup.img")
	if err := os.WriteFile(pimg, make([]byte, testDisk), 0o600); err != nil {
		t.Fatal(err)
	}
	// The backup starts with other contents: the first checkpoint must
	// carry the whole disk.
	junk := make([]byte, testDisk)
	for i := range junk {
		junk[i] = byte(i * 13)
	}
	if err := os.WriteFile(bimg, junk, 0o600); err != nil {
		t.Fatal(err)
	}
	x, err := disk.NewExport(pimg, filepath.Join(dir, "nbd.sock"), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { x.Close() }) // after the backup and primary stopped
	rd, err := disk.OpenReplica(bimg, disk.ReplicaOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rd.Close() })
	g := &diskGuest{Domain: sim.NewDomain(sim.Config{Name: "vm1", MemSize: 1 << 20, Seed: 7, WritesPerMs: 50, HotPages: 128})}
	g.Start()
	defer g.Stop()
	c, err := nbd.Dial(filepath.Join(dir, "nbd.sock"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()

	replica := sim.NewReplica(g.MemorySize())
	log, logBuf := testLogger(t)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("agent log:\n%s", lastLogLines(logBuf.String(), 40))
		}
	})
	bcfg := checkpointer.BackupConfig{VM: "vm1", Replica: replica, Standby: &fakeStandby{replica: replica}, Codec: cdc,
		// Long timeouts: a guest fsync on a loaded machine can hold a
		// pause (and so a reconnection) for seconds; no failover here.
		HeartbeatInterval: 20 * time.Millisecond, HeartbeatTimeout: 15 * time.Second,
		Failover: checkpointer.FailoverConfig{Fence: checkpointer.CommandFencer{Command: "true"}}, Logger: log}
	if replicate {
		bcfg.Disk = rd
	}
	b, addr, _ := startBackup(t, bcfg)
	out := &diskOutput{recOutput: newRecOutput(g, func() *checkpointer.Backup { return b }), primary: pimg, backup: bimg, at: map[uint64][32]byte{}}
	var proxy *cutProxy
	if cuts > 0 {
		proxy = newCutProxy(t, addr)
		addr = proxy.ln.Addr().String()
	}
	pcfg := checkpointer.PrimaryConfig{Domain: g, Output: out, Codec: cdc, Dial: dialer(addr), RetryInterval: 20 * time.Millisecond,
		Interval: 15 * time.Millisecond, HeartbeatInterval: 20 * time.Millisecond, HeartbeatTimeout: 15 * time.Second,
		PrecopyStopPages: 64, Pipeline: pipeline, Logger: log}
	if replicate {
		pcfg.Disk = x
	}
	var diskBytes, maxEpoch atomic.Int64
	var epochs atomic.Int32
	pcfg.OnEpoch = func(s checkpointer.EpochStats) {
		diskBytes.Add(s.DiskBytes)
		epochs.Add(1)
		if s.DiskBytes > maxEpoch.Load() {
			maxEpoch.Store(s.DiskBytes)
		}
	}
	var copied atomic.Uint64
	pcfg.DiskProgress = func(done, _ uint64) { copied.Store(done) }
	p, err := checkpointer.NewPrimary(pcfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- p.Run(ctx) }()
	stop := make(chan struct{})
	werr := make(chan error, 1)
	go func() { werr <- g.write(c, 11, stop) }()
	// The primary must keep running through the cuts: if it stops, say why.
	alive := func() {
		select {
		case err := <-errc:
			t.Fatalf("primary stopped: %v", err)
		default:
		}
	}
	for i := 1; i <= cuts; i++ {
		waitFor(t, 60*time.Second, "releases before a cut", func() bool {
			alive()
			n, _, _ := out.snapshot()
			return n >= i*want/(cuts+1)
		})
		proxy.cut()
	}
	waitFor(t, 60*time.Second, fmt.Sprintf("%d released epochs", want), func() bool {
		alive()
		n, _, _ := out.snapshot()
		return n >= want
	})
	close(stop)
	if err := recvWithin(t, werr, 10*time.Second, "disk writer"); err != nil {
		t.Fatalf("guest disk write: %v", err)
	}
	cancel()
	if err := recvWithin(t, errc, 20*time.Second, "primary"); err != nil {
		t.Fatalf("primary: %v", err)
	}
	if st := x.Stats(); st.Writes < 20 || st.BusyCuts != 0 {
		t.Fatalf("export stats %+v: too few writes, or a cut with a request in flight", st)
	}
	t.Logf("%d epochs, %d disk bytes shipped in epochs (largest %d), %d guest writes", epochs.Load(), diskBytes.Load(), maxEpoch.Load(), x.Stats().Writes)
	if replicate && cuts == 0 && (copied.Load() != testDisk || maxEpoch.Load() >= testDisk) { // the whole disk in one epoch
		t.Errorf("initial disk copy: %d of %d bytes pre-copied, largest epoch %d bytes: the copy must not ride in a pause",
			copied.Load(), testDisk, maxEpoch.Load())
	}
	return out
}

// After every ACK the backup's disk image equals the primary's disk at
// that epoch's cut, byte for byte (and memory still matches).
func TestDiskMatchesEveryAckedEpoch(t *testing.T) {
	for _, cdc := range testCodecs {
		for _, pipe := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/pipeline=%v", cdc.Name(), pipe), func(t *testing.T) {
				out := runDiskPair(t, cdc, pipe, true, 25, 0)
				_, _, errs := out.snapshot()
				for _, e := range errs {
					t.Error(e)
				}
				out.mu.Lock()
				defer out.mu.Unlock()
				if out.differ != 0 || out.matched < 25 {
					t.Fatalf("backup disk matched the primary at %d releases, differed at %d", out.matched, out.differ)
				}
			})
		}
	}
}

// The connection to the backup is cut three times: the primary reconnects,
// resends the cuts the backup never acknowledged (or the whole disk), and
// the backup's disk still equals the primary's at every release.
func TestDiskSurvivesReconnects(t *testing.T) {
	for _, pipe := range []bool{false, true} {
		t.Run(fmt.Sprintf("pipeline=%v", pipe), func(t *testing.T) {
			out := runDiskPair(t, codec.Raw{}, pipe, true, 32, 3)
			_, _, errs := out.snapshot()
			for _, e := range errs {
				t.Error(e)
			}
			out.mu.Lock()
			defer out.mu.Unlock()
			if out.differ != 0 {
				t.Fatalf("after reconnects the backup disk differed at %d of %d releases", out.differ, out.matched+out.differ)
			}
		})
	}
}

// Negative control: the same run with disk replication off shows the
// violation the test above rules out.
func TestDiskNegativeControl(t *testing.T) {
	out := runDiskPair(t, codec.Raw{}, false, false, 10, 0)
	out.mu.Lock()
	defer out.mu.Unlock()
	if out.differ == 0 {
		t.Fatalf("without disk replication the backup's disk matched at all %d releases: the check proves nothing", out.matched)
	}
	t.Logf("replication off: backup disk differed at %d of %d releases", out.differ, out.differ+out.matched)
}

func lastLogLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}
