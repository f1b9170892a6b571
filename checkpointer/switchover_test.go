// SPDX-License-Identifier: Apache-2.0

package checkpointer_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/resilire/resilire/checkpointer"
	"github.com/resilire/resilire/checkpointer/codec"
	"github.com/resilire/resilire/checkpointer/sim"
)

// noFence fails the test if a switchover fences.
type noFence struct{ t *testing.T }

func (f noFence) Fence(context.Context, checkpointer.FenceRequest) error {
	f.t.Error("a switchover ran the fence")
	return errors.New("fence during a switchover")
}

// A planned switchover: the guest stops on the primary exactly at the
// checkpoint the backup activates (same memory, same device state), the
// backup goes live without fencing, and the primary's Run ends with state
// handed-over. Pipelined or not.
func TestSwitchover(t *testing.T) {
	for _, pipeline := range []bool{false, true} {
		t.Run(fmt.Sprintf("pipeline=%v", pipeline), func(t *testing.T) {
			replica := sim.NewReplica(testMem)
			sb := &fakeStandby{replica: replica}
			log, logs := testLogger(t)
			b, addr, _ := startBackup(t, checkpointer.BackupConfig{VM: "vm1", Replica: replica, Standby: sb, Codec: codec.DefaultFGBI(),
				HeartbeatInterval: 20 * time.Millisecond, HeartbeatTimeout: time.Second,
				Failover: checkpointer.FailoverConfig{Fence: noFence{t}}, Logger: log})
			dom := sim.NewDomain(sim.Config{Name: "vm1", MemSize: testMem, Seed: 3})
			dom.Start()
			defer dom.Stop()
			p, err := checkpointer.NewPrimary(checkpointer.PrimaryConfig{Domain: dom, Output: checkpointer.NewEpochCounterAt(1), Codec: codec.DefaultFGBI(),
				Dial: dialer(addr), Interval: 5 * time.Millisecond, HeartbeatInterval: 20 * time.Millisecond, Pipeline: pipeline})
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			if err := p.Switchover(ctx); !errors.Is(err, checkpointer.ErrNotProtected) {
				t.Fatalf("switchover before protection: %v, want ErrNotProtected", err)
			}
			done := make(chan error, 1)
			go func() { done <- p.Run(ctx) }()
			waitFor(t, 10*time.Second, "a few protected epochs", func() bool { e, _ := b.Committed(); return e > 5 })
			if err := p.Switchover(ctx); err != nil {
				t.Fatalf("switchover: %v", err)
			}
			if err := recvWithin(t, done, 10*time.Second, "the primary to stop"); err != nil {
				t.Fatalf("Run after the switchover: %v", err)
			}
			if st := p.Status(); st.State != checkpointer.StateHandedOver {
				t.Fatalf("primary state %q", st.State)
			}
			if !dom.Paused() {
				t.Fatal("the old primary's guest runs on")
			}
			waitFor(t, 10*time.Second, "activation", func() bool { ok, _, _, _ := sb.get(); return ok })
			_, state, memHash, _ := sb.get()
			want, _ := dom.SaveState(ctx)
			if memHash != dom.Hash() || string(state) != string(want) {
				t.Fatal("the backup resumed another state than the one the primary stopped at")
			}
			if e, _ := b.Committed(); e != p.Status().Epoch {
				t.Fatalf("backup resumed epoch %d, primary's last acknowledged %d", e, p.Status().Epoch)
			}
			mustContain(t, logs.String(), "no fencing: the primary handed the guest over")
		})
	}
}

// A backup whose answers stop coming during the switchover (its ACKs
// dropped on the way back): the final checkpoint is never acknowledged, so
// the switchover fails, the guest resumes on the primary, and the backup
// never goes live.
func TestSwitchoverWithoutAckResumes(t *testing.T) {
	replica := sim.NewReplica(testMem)
	sb := &fakeStandby{replica: replica}
	b, addr, _ := startBackup(t, checkpointer.BackupConfig{VM: "vm1", Replica: replica, Standby: sb, Codec: codec.Raw{},
		HeartbeatInterval: 20 * time.Millisecond, HeartbeatTimeout: time.Minute})
	px := newMuteProxy(t, addr)
	dom := sim.NewDomain(sim.Config{Name: "vm1", MemSize: testMem, Seed: 4})
	dom.Start()
	defer dom.Stop()
	p, err := checkpointer.NewPrimary(checkpointer.PrimaryConfig{Domain: dom, Output: checkpointer.NewEpochCounterAt(1), Codec: codec.Raw{},
		Dial: dialer(px.addr()), Interval: 5 * time.Millisecond, HeartbeatInterval: 20 * time.Millisecond, HeartbeatTimeout: time.Second,
		AckTimeout: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	p.BeforeHandover(px.mute) // the final checkpoint's ACK never comes back
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	waitFor(t, 10*time.Second, "protected", func() bool { return p.Status().State == checkpointer.StateProtected })
	sctx, scancel := context.WithTimeout(ctx, 5*time.Second)
	err = p.Switchover(sctx)
	scancel()
	if !errors.Is(err, checkpointer.ErrBackupLost) {
		t.Fatalf("switchover with no ACK coming back: %v, want ErrBackupLost", err)
	}
	t.Logf("switchover: %v", err)
	waitFor(t, 5*time.Second, "the guest running on", func() bool { return !dom.Paused() })
	if ok, _, _, _ := sb.get(); ok {
		t.Fatal("the backup went live")
	}
	if st := b.StateNow(); st == checkpointer.StateActive || st == checkpointer.StateFencing {
		t.Fatalf("backup state %s", st)
	}
	cancel()
	if err := recvWithin(t, done, 10*time.Second, "the primary to stop"); err != nil && !errors.Is(err, context.Canceled) {
		t.Fatalf("Run: %v", err)
	}
}

// muteProxy forwards TCP both ways until mute, then drops every byte from
// the target (ACKs, heartbeats) while still forwarding toward it.
type muteProxy struct {
	ln    net.Listener
	muted atomic.Bool
}

func newMuteProxy(t *testing.T, target string) *muteProxy {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &muteProxy{ln: ln}
	var wg sync.WaitGroup
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			u, err := net.Dial("tcp", target)
			if err != nil {
				c.Close()
				continue
			}
			wg.Add(2)
			go func() { defer wg.Done(); _, _ = io.Copy(u, c); u.Close() }()
			go func() {
				defer wg.Done()
				buf := make([]byte, 32<<10)
				for {
					n, err := u.Read(buf)
					if n > 0 && !p.muted.Load() {
						if _, werr := c.Write(buf[:n]); werr != nil {
							break
						}
					}
					if err != nil {
						break
					}
				}
				c.Close()
			}()
		}
	}()
	t.Cleanup(func() { ln.Close() })
	return p
}

func (p *muteProxy) addr() string { return p.ln.Addr().String() }
func (p *muteProxy) mute()        { p.muted.Store(true) }

// POST /switchover: served on a loopback address only, 409 when there is
// nothing to hand over to, the agent's status after a switchover.
func TestSwitchoverHTTP(t *testing.T) {
	serve := func(addr string, sw func(context.Context) error) string {
		ctx, cancel := context.WithCancel(context.Background())
		ready := make(chan string, 1)
		done := make(chan error, 1)
		go func() {
			done <- checkpointer.ServeAgentHTTP(ctx, addr, prometheus.NewRegistry(),
				func() checkpointer.Status { return checkpointer.Status{VM: "vm1", State: checkpointer.StateHandedOver} }, sw, ready, nil)
		}()
		t.Cleanup(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("http server: %v", err)
			}
		})
		return <-ready
	}
	ctx := context.Background()
	calls := 0
	ok := serve("127.0.0.1:0", func(context.Context) error { calls++; return nil })
	st, err := checkpointer.RequestSwitchover(ctx, ok)
	if err != nil || st.State != checkpointer.StateHandedOver || calls != 1 {
		t.Fatalf("switchover: %+v, %v, %d calls", st, err, calls)
	}
	busy := serve("127.0.0.1:0", func(context.Context) error { return fmt.Errorf("%w: syncing", checkpointer.ErrNotProtected) })
	if _, err := checkpointer.RequestSwitchover(ctx, busy); err == nil || !strings.Contains(err.Error(), "409") {
		t.Fatalf("switchover while not protected: %v, want 409", err)
	}
	wide := serve("0.0.0.0:0", func(context.Context) error { t.Error("switchover served on a non-loopback address"); return nil })
	_, port, _ := net.SplitHostPort(wide)
	if _, err := checkpointer.RequestSwitchover(ctx, net.JoinHostPort("127.0.0.1", port)); err == nil || !strings.Contains(err.Error(), "403") {
		t.Fatalf("switchover on 0.0.0.0: %v, want 403", err)
	}
	// The Go profiles: on a loopback address only.
	get := func(addr string) int {
		resp, err := http.Get("http://" + addr + "/debug/pprof/heap")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		_, _ = io.Copy(io.Discard, resp.Body)
		return resp.StatusCode
	}
	if code := get(ok); code != http.StatusOK {
		t.Errorf("heap profile on loopback: %d", code)
	}
	if code := get(net.JoinHostPort("127.0.0.1", port)); code != http.StatusNotFound {
		t.Errorf("heap profile on 0.0.0.0: %d, want 404", code)
	}
}
