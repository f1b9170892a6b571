// SPDX-License-Identifier: Apache-2.0

package qemu_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/resilire/resilire/checkpointer/qemu"
	"github.com/resilire/resilire/testenv"
	"github.com/resilire/resilire/testenv/guest"
	"github.com/resilire/resilire/testenv/guest/kv"
)

// Names in /dev/shm and netns/interface prefix of this package's tests,
// unique to the test process (testenv.RigPrefix).
var (
	rigPrefix = testenv.RigPrefix("rqmq")
	shmPrefix = "/dev/shm/" + rigPrefix + "-"
)

// bootPrimary builds the guest assets and the rig and boots the primary
// guest on host-a. Everything is removed at the end of the test.
func bootPrimary(t testing.TB, ctx context.Context) (*testenv.Rig, qemu.Config, *qemu.VM, time.Duration) {
	t.Helper()
	assets, err := guest.Build(ctx, guest.DefaultDir())
	if err != nil {
		t.Fatalf("guest assets: %v", err)
	}
	rig, err := testenv.NewRig(testenv.RigConfig{Prefix: rigPrefix})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rig.Close() })
	cfg := assets.QEMUConfig("rqm-primary", shmPrefix+"primary.ram", rig.A.Tap, rig.A.Netns, t.TempDir(), rig.GuestAddr)
	cfg.KillWithParent = true
	start := time.Now()
	vm, err := qemu.Start(ctx, cfg, false)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := vm.Kill(); err != nil {
			t.Error(err)
		}
		os.Remove(cfg.MemPath)
	})
	if err := vm.WaitSerial(ctx, kv.ReadyLine); err != nil {
		t.Fatal(err)
	}
	return rig, cfg, vm, time.Since(start)
}

func dialGuest(ctx context.Context, rig *testenv.Rig) (*kv.Client, error) {
	c, err := testenv.DialIn(ctx, rig.Client, "tcp", net.JoinHostPort(rig.GuestAddr.Addr().String(), strconv.Itoa(kv.Port)))
	if err != nil {
		return nil, err
	}
	cl := kv.NewClient(c)
	cl.Timeout = 5 * time.Second
	return cl, nil
}

// checkpoint is one epoch as the engine will run it, minus the network:
// pause, harvest, copy pages, save device state, resume. Pages are staged
// and applied to the replica only after the whole checkpoint exists.
type checkpoint struct {
	pfns  []uint64
	pages []byte
	state []byte
	pause time.Duration
	// phase durations: stop, harvest, read, save, cont
	phases [5]time.Duration
}

// takeCheckpoint runs one epoch; whilePaused, if set, runs just before
// the resume.
func takeCheckpoint(ctx context.Context, d *qemu.Domain, whilePaused func(*checkpoint) error) (*checkpoint, error) {
	start := time.Now()
	var ph [5]time.Duration
	t := start
	lap := func(i int) { now := time.Now(); ph[i] = now.Sub(t); t = now }
	if err := d.Pause(ctx); err != nil {
		return nil, err
	}
	lap(0)
	pfns, err := d.HarvestDirty(ctx, nil)
	if err != nil {
		return nil, err
	}
	lap(1)
	ck := &checkpoint{pfns: pfns, pages: make([]byte, len(pfns)*qemu.PageSize)}
	if err := d.ReadPages(pfns, ck.pages); err != nil {
		return nil, err
	}
	lap(2)
	if ck.state, err = d.SaveState(ctx); err != nil {
		return nil, err
	}
	lap(3)
	if whilePaused != nil {
		if err := whilePaused(ck); err != nil {
			return nil, err
		}
	}
	t = time.Now()
	if err := d.Resume(ctx); err != nil {
		return nil, err
	}
	lap(4)
	ck.pause, ck.phases = time.Since(start), ph
	return ck, nil
}

// initialCopy copies every page of dom into mem in one pause, with the
// dirty log's baseline, and returns every page number.
func initialCopy(t *testing.T, ctx context.Context, dom *qemu.Domain, mem []byte) []uint64 {
	t.Helper()
	all := make([]uint64, dom.MemorySize()/qemu.PageSize)
	for i := range all {
		all[i] = uint64(i)
	}
	if err := dom.Pause(ctx); err != nil {
		t.Fatal(err)
	}
	if err := dom.EnableDirtyLog(ctx); err != nil {
		t.Fatal(err)
	}
	if err := dom.ReadPages(all, mem); err != nil {
		t.Fatal(err)
	}
	if _, err := dom.SaveState(ctx); err != nil {
		t.Fatal(err)
	}
	if err := dom.Resume(ctx); err != nil {
		t.Fatal(err)
	}
	return all
}

func (ck *checkpoint) apply(mem []byte) {
	for i, pfn := range ck.pfns {
		copy(mem[pfn*qemu.PageSize:(pfn+1)*qemu.PageSize], ck.pages[i*qemu.PageSize:(i+1)*qemu.PageSize])
	}
}

func percentile(d []time.Duration, p float64) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	return s[min(len(s)-1, int(float64(len(s))*p))]
}

// pair is a primary guest booted on host-a and protected by hand: its
// replica holds the initial copy, and a warm standby waits on host-b.
type pair struct {
	rig        *testenv.Rig
	pcfg, scfg qemu.Config
	vm         *qemu.VM
	boot       time.Duration
	cl         *kv.Client
	dom        *qemu.Domain
	replica    *qemu.Replica
	sb         *qemu.Standby
	all        []uint64 // every page number
}

// newPair boots and protects a pair; tag names its replica and standby.
// The caller closes cl and dom; the rest goes at the end of the test.
func newPair(t *testing.T, ctx context.Context, tag string) *pair {
	t.Helper()
	p := &pair{}
	var err error
	p.rig, p.pcfg, p.vm, p.boot = bootPrimary(t, ctx)
	if p.cl, err = dialGuest(ctx, p.rig); err != nil {
		t.Fatal(err)
	}
	if p.dom, err = qemu.NewDomain(p.vm, qemu.DomainOptions{}); err != nil {
		t.Fatal(err)
	}
	if p.replica, err = qemu.CreateReplica(shmPrefix+tag+"replica.ram", p.dom.MemorySize()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		p.replica.Close()
		if err := p.replica.Remove(); err != nil {
			t.Error(err)
		}
	})
	p.all = initialCopy(t, ctx, p.dom, p.replica.Memory())
	run := t.TempDir()
	p.scfg = p.pcfg.ForHost("rqm-"+tag+"standby", p.replica.Path(), p.rig.B.Tap,
		filepath.Join(run, "standby.qmp"), filepath.Join(run, "standby.serial"), p.rig.B.Netns)
	if p.sb, err = qemu.StartStandby(ctx, p.scfg); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		p.sb.Close()
		if err := p.sb.VM().Kill(); err != nil {
			t.Error(err)
		}
	})
	return p
}

// TestFailover boots the guest on host-a, writes to its kv store from the
// client namespace, takes checkpoints with the driver and copies them into
// a replica by hand (no engine), kills the primary QEMU with SIGKILL and
// activates the warm standby on host-b. The store must then hold exactly
// the state of the last checkpoint: every write acknowledged before it,
// none of the acknowledged writes made after it.
func TestFailover(t *testing.T) {
	testenv.RequirePrivileged(t)
	if testing.Short() {
		t.Skip("boots a VM")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	p := newPair(t, ctx, "")
	rig, vm, boot, cl, dom, replica, sb, scfg, all := p.rig, p.vm, p.boot, p.cl, p.dom, p.replica, p.sb, p.scfg, p.all
	defer cl.Close()
	defer dom.Close()
	var err error
	const epochs = 30
	acked := map[string]string{}
	var counter int64
	var pauses []time.Duration
	var dirty []int
	var phases [5][]time.Duration
	for e := 0; e < epochs; e++ {
		if e == epochs/3 {
			if err := cl.Dirty(100); err != nil { // 100 pages per 10 ms
				t.Fatal(err)
			}
		}
		for j := 0; j < 5; j++ {
			k, v := fmt.Sprintf("e%d-%d", e, j), fmt.Sprintf("v%d", e*10+j)
			if _, err := cl.Set(k, v); err != nil {
				t.Fatal(err)
			}
			acked[k] = v
		}
		if counter, err = cl.Incr("counter"); err != nil {
			t.Fatal(err)
		}
		ck, err := takeCheckpoint(ctx, dom, nil)
		if err != nil {
			t.Fatalf("epoch %d: %v", e, err)
		}
		ck.apply(replica.Memory())
		pauses = append(pauses, ck.pause)
		dirty = append(dirty, len(ck.pfns))
		for i, d := range ck.phases {
			phases[i] = append(phases[i], d)
		}
		time.Sleep(20 * time.Millisecond)
	}
	want, err := cl.Stats()
	if err != nil {
		t.Fatal(err)
	}
	// The last checkpoint also proves, while the primary is paused, that
	// the replica equals its RAM byte for byte: no page was missed.
	full := make([]byte, dom.MemorySize())
	last, err := takeCheckpoint(ctx, dom, func(ck *checkpoint) error {
		ck.apply(replica.Memory())
		if err := dom.ReadPages(all, full); err != nil {
			return err
		}
		if !bytes.Equal(full, replica.Memory()) {
			return fmt.Errorf("replica differs from the primary's RAM in %d pages", diffPages(full, replica.Memory()))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	state := last.state
	if err := replica.Sync(); err != nil {
		t.Fatal(err)
	}
	// Acknowledged writes after the last checkpoint: the failover must
	// roll them back (they were never replicated).
	for j := 0; j < 3; j++ {
		if _, err := cl.Set(fmt.Sprintf("post-%d", j), "lost"); err != nil {
			t.Fatal(err)
		}
		if _, err := cl.Incr("counter"); err != nil {
			t.Fatal(err)
		}
	}

	killed := time.Now()
	if err := vm.Kill(); err != nil {
		t.Fatal(err)
	}
	if err := sb.Activate(ctx, state); err != nil {
		t.Fatalf("activate standby: %v (stderr: %s)", err, sb.VM().Stderr())
	}
	killToCont := time.Since(killed)
	if s, err := sb.VM().Status(ctx); err != nil || s != "running" {
		t.Fatalf("standby status %q, %v", s, err)
	}
	cl2, err := dialUntil(ctx, rig, 10*time.Second)
	if err != nil {
		t.Fatalf("guest unreachable after failover: %v", err)
	}
	defer cl2.Close()
	got, err := cl2.Stats()
	if err != nil {
		t.Fatal(err)
	}
	killToReply := time.Since(killed)
	checkRolledBack(t, "failover", cl2, got, want, acked, "post-", 3, counter)
	// The promoted guest can be protected again by a new controller: drop
	// the QMP connection (a crashed agent), attach, checkpoint it, and
	// fence it by pid.
	sb.VM().Detach()
	vm2, err := qemu.Attach(ctx, scfg)
	if err != nil {
		t.Fatal(err)
	}
	dom2, err := qemu.NewDomain(vm2, qemu.DomainOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer dom2.Close()
	if err := dom2.Pause(ctx); err != nil {
		t.Fatal(err)
	}
	if err := dom2.EnableDirtyLog(ctx); err != nil {
		t.Fatal(err)
	}
	if s, err := dom2.SaveState(ctx); err != nil || len(s) == 0 {
		t.Fatalf("state of the promoted guest: %d bytes, %v", len(s), err)
	}
	if err := dom2.Resume(ctx); err != nil {
		t.Fatal(err)
	}
	if n, err := cl2.Incr("counter"); err != nil || n != counter+2 {
		t.Errorf("counter after re-protection: INCR = %d, %v; want %d", n, err, counter+2)
	}
	if err := vm2.Kill(); err != nil {
		t.Fatal(err)
	}
	t.Logf("boot to SERVER READY: %v", boot.Round(time.Millisecond))
	t.Logf("checkpoints: n=%d stop->cont p50 %v p99 %v max %v; dirty pages p50 %d max %d; device state %d bytes",
		len(pauses), percentile(pauses, .5).Round(10*time.Microsecond), percentile(pauses, .99).Round(10*time.Microsecond),
		slices.Max(pauses).Round(10*time.Microsecond), median(dirty), slices.Max(dirty), len(state))
	t.Logf("pause phases p50: stop %v, harvest %v, read pages %v, save state %v, cont %v",
		percentile(phases[0], .5), percentile(phases[1], .5), percentile(phases[2], .5), percentile(phases[3], .5), percentile(phases[4], .5))
	t.Logf("failover: kill->cont %v, kill->first reply on a new connection %v",
		killToCont.Round(10*time.Microsecond), killToReply.Round(10*time.Microsecond))
}

// checkRolledBack checks that the guest behind cl, whose STATS gave got,
// holds exactly a checkpoint's state: STATS want, every acked write, none
// of the n writes prefix0..prefix<n-1> made after the checkpoint, and its
// counter at counter (one INCR gives counter+1).
func checkRolledBack(t *testing.T, what string, cl *kv.Client, got, want kv.Stats, acked map[string]string, prefix string, n int, counter int64) {
	t.Helper()
	if got.Keys != want.Keys || got.Seq != want.Seq {
		t.Errorf("after %s keys=%d seq=%d, want the checkpoint's keys=%d seq=%d", what, got.Keys, got.Seq, want.Keys, want.Seq)
	}
	for k, v := range acked {
		if g, err := cl.Get(k); err != nil || g != v {
			t.Errorf("%s: acked write %s=%s before the checkpoint: got %q, %v", what, k, v, g, err)
		}
	}
	for j := range n {
		if _, err := cl.Get(fmt.Sprintf("%s%d", prefix, j)); !errors.Is(err, kv.ErrNotFound) {
			t.Errorf("%s: %s%d written after the checkpoint survived: %v", what, prefix, j, err)
		}
	}
	if got, err := cl.Incr("counter"); err != nil || got != counter+1 {
		t.Errorf("counter after %s: INCR = %d, %v; want %d", what, got, err, counter+1)
	}
}

// dialUntil retries connecting to the guest (ARP and the bridges learn the
// guest's new port after the standby's announce).
func dialUntil(ctx context.Context, rig *testenv.Rig, limit time.Duration) (*kv.Client, error) {
	deadline := time.Now().Add(limit)
	for {
		dctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
		cl, err := dialGuest(dctx, rig)
		cancel()
		if err == nil {
			return cl, nil
		}
		if time.Now().After(deadline) {
			return nil, err
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func diffPages(a, b []byte) int {
	n := 0
	for off := 0; off < len(a); off += qemu.PageSize {
		if !bytes.Equal(a[off:off+qemu.PageSize], b[off:off+qemu.PageSize]) {
			n++
		}
	}
	return n
}

func median(v []int) int {
	s := slices.Clone(v)
	slices.Sort(s)
	return s[len(s)/2]
}
