// SPDX-License-Identifier: Apache-2.0

package checkpointer_test

import (
	"context"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/resilire/resilire/checkpointer"
	"github.com/resilire/resilire/checkpointer/sim"

	"github.com/resilire/resilire/checkpointer/codec"
)

// cutProxy forwards TCP to a target until cut.
type cutProxy struct {
	ln     net.Listener
	target string
	mu     sync.Mutex
	conns  []net.Conn
}

func newCutProxy(t *testing.T, target string) *cutProxy {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &cutProxy{ln: ln, target: target}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			u, err := net.Dial("tcp", p.target)
			if err != nil {
				c.Close()
				continue
			}
			p.mu.Lock()
			p.conns = append(p.conns, c, u)
			p.mu.Unlock()
			go func() { _, _ = io.Copy(u, c); u.Close() }()
			go func() { _, _ = io.Copy(c, u); c.Close() }()
		}
	}()
	t.Cleanup(func() { ln.Close(); p.cut() })
	return p
}

func (p *cutProxy) cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.conns {
		c.Close()
	}
	p.conns = nil
}

type policyRig struct {
	dom     *sim.Domain
	out     *recOutput
	prim    *checkpointer.Primary
	backup  atomic.Pointer[checkpointer.Backup]
	log     *syncBuffer
	stopPri func()
}

func newPolicyRig(t *testing.T, policy checkpointer.LossPolicy, addr func() string) *policyRig {
	r := &policyRig{dom: sim.NewDomain(sim.Config{Name: "vm1", MemSize: 1 << 20, Seed: 3, WritesPerMs: 50, HotPages: 128})}
	r.dom.Start()
	t.Cleanup(r.dom.Stop)
	r.out = newRecOutput(r.dom, func() *checkpointer.Backup { return r.backup.Load() })
	log, buf := testLogger(t)
	r.log = buf
	dial := func(ctx context.Context) (net.Conn, error) {
		d := net.Dialer{Timeout: time.Second}
		return d.DialContext(ctx, "tcp", addr())
	}
	p, err := checkpointer.NewPrimary(checkpointer.PrimaryConfig{Domain: r.dom, Output: r.out, Codec: codec.DefaultFGBI(), Dial: dial,
		Interval: 5 * time.Millisecond, HeartbeatInterval: 20 * time.Millisecond, HeartbeatTimeout: 300 * time.Millisecond,
		RetryInterval: 30 * time.Millisecond, OnBackupLoss: policy, Logger: log, Pipeline: policy == checkpointer.LossContinue})
	if err != nil {
		t.Fatal(err)
	}
	r.prim = p
	r.out.unprotected = func() bool {
		// The continue policy also talks while a new backup is synchronised
		// (nothing is protected before its first consistent checkpoint).
		st := p.Status().State
		return st == checkpointer.StateUnprotected || (policy == checkpointer.LossContinue && st == checkpointer.StateSyncing)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	r.stopPri = func() {
		cancel()
		if err := recvWithin(t, done, 20*time.Second, "primary"); err != nil {
			t.Errorf("primary: %v", err)
		}
	}
	return r
}

func (r *policyRig) released() uint64 { _, rel, _ := r.out.snapshot(); return rel }

func (r *policyRig) checkErrs(t *testing.T) {
	_, _, errs := r.out.snapshot()
	for _, e := range errs {
		t.Error(e)
	}
}

func backupFor(t *testing.T, r *policyRig, ln net.Listener, timeout time.Duration) func() {
	replica := sim.NewReplica(r.dom.MemorySize())
	b, err := checkpointer.NewBackup(checkpointer.BackupConfig{VM: "vm1", Replica: replica, Standby: &fakeStandby{replica: replica},
		Codec: codec.DefaultFGBI(), Listener: ln, HeartbeatInterval: 20 * time.Millisecond, HeartbeatTimeout: timeout})
	if err != nil {
		t.Fatal(err)
	}
	r.backup.Store(b)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{}, 1)
	go func() { _ = b.Serve(ctx); done <- struct{}{} }()
	return func() { cancel(); recvWithin(t, done, 20*time.Second, "backup") }
}

// block: with the backup gone, nothing is released and the primary says
// blocked; a new (empty) backup gets a full pre-copy resync, and from then
// on every release again matches the replica.
func TestBackupLossBlock(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	r := newPolicyRig(t, checkpointer.LossBlock, func() string { return addr })
	stop := backupFor(t, r, ln, 2*time.Second)
	waitFor(t, 10*time.Second, "protection", func() bool { return r.released() >= 5 })

	r.backup.Store(nil)
	stop()
	waitFor(t, 5*time.Second, "blocked", func() bool { return r.prim.Status().State == checkpointer.StateBlocked })
	held := r.released()
	time.Sleep(100 * time.Millisecond) // 20 intervals without a backup
	if got := r.released(); got != held {
		t.Fatalf("released epoch %d while blocked (was %d)", got, held)
	}
	ln2, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	stop2 := backupFor(t, r, ln2, 2*time.Second)
	defer stop2()
	waitFor(t, 10*time.Second, "re-protection", func() bool { return r.released() >= held+5 })
	r.stopPri()
	r.checkErrs(t)
	if r.out.discards != 0 {
		t.Fatal("block mode discarded held output")
	}
}

// continue: the unacknowledged output is discarded (never released), the
// guest's output flows unprotected, and protection comes back, without
// pre-copy, when the same backup (still holding a checkpoint) returns.
func TestBackupLossContinue(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	proxy := newCutProxy(t, ln.Addr().String())
	var up atomic.Bool
	up.Store(true)
	r := newPolicyRig(t, checkpointer.LossContinue, func() string {
		if !up.Load() {
			return "127.0.0.1:1" // refused
		}
		return proxy.ln.Addr().String()
	})
	stop := backupFor(t, r, ln, 5*time.Second)
	defer stop()
	b := r.backup.Load()
	waitFor(t, 10*time.Second, "protection", func() bool { return r.released() >= 5 })

	up.Store(false)
	proxy.cut()
	waitFor(t, 5*time.Second, "unprotected", func() bool { return r.prim.Status().State == checkpointer.StateUnprotected })
	before := r.released()
	waitFor(t, 5*time.Second, "unprotected releases", func() bool { return r.released() >= before+5 })
	r.out.mu.Lock()
	discards := r.out.discards
	r.out.mu.Unlock()
	if discards != 1 {
		t.Fatalf("%d discards after the loss, want 1", discards)
	}
	committedBefore, _ := b.Committed()

	up.Store(true)
	waitFor(t, 10*time.Second, "re-protection", func() bool { return r.prim.Status().State == checkpointer.StateProtected })
	after := r.released()
	waitFor(t, 10*time.Second, "protected releases", func() bool { return r.released() >= after+5 })
	r.stopPri()
	r.checkErrs(t)
	mustContain(t, r.log.String(), "full first checkpoint, no pre-copy")
	if c, _ := b.Committed(); c <= committedBefore {
		t.Fatalf("backup committed %d, had %d", c, committedBefore)
	}
}

// hashTracked is a guest whose dirty log says pre-copy is unsafe.
type hashTracked struct{ *sim.Domain }

func (hashTracked) PrecopySafe() bool { return false }

// A domain that cannot pre-copy gets its whole memory in the first,
// paused checkpoint, and the replica still matches at every acked epoch.
func TestNoPrecopyDomain(t *testing.T) {
	dom := sim.NewDomain(sim.Config{Name: "vm1", MemSize: 1 << 20, Seed: 4, WritesPerMs: 50, HotPages: 64})
	dom.Start()
	defer dom.Stop()
	replica := sim.NewReplica(dom.MemorySize())
	log, buf := testLogger(t)
	b, addr, _ := startBackup(t, checkpointer.BackupConfig{VM: "vm1", Replica: replica, Standby: &fakeStandby{replica: replica},
		Codec: codec.DefaultFGBI(), HeartbeatTimeout: 5 * time.Second})
	out := newRecOutput(dom, func() *checkpointer.Backup { return b })
	var firstPages int
	p, err := checkpointer.NewPrimary(checkpointer.PrimaryConfig{Domain: hashTracked{dom}, Output: out, Codec: codec.DefaultFGBI(), Dial: dialer(addr),
		Interval: 5 * time.Millisecond, Logger: log, OnEpoch: func(st checkpointer.EpochStats) {
			if firstPages == 0 {
				firstPages = st.Pages
			}
		}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- p.Run(ctx) }()
	waitFor(t, 10*time.Second, "epochs", func() bool { n, _, _ := out.snapshot(); return n >= 5 })
	cancel()
	if err := recvWithin(t, errc, 20*time.Second, "primary"); err != nil {
		t.Fatal(err)
	}
	_, _, errs := out.snapshot()
	for _, e := range errs {
		t.Error(e)
	}
	if firstPages != int(dom.MemorySize()/checkpointer.PageSize) {
		t.Fatalf("first checkpoint carried %d pages, want all %d", firstPages, dom.MemorySize()/checkpointer.PageSize)
	}
	mustContain(t, buf.String(), "no pre-copy for this domain")
}
