// SPDX-License-Identifier: Apache-2.0

package group_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/resilire/resilire/checkpointer"
	"github.com/resilire/resilire/checkpointer/codec"
	"github.com/resilire/resilire/checkpointer/group"
	"github.com/resilire/resilire/checkpointer/sim"
	"github.com/resilire/resilire/checkpointer/wire"
	"github.com/resilire/resilire/testenv/pki"
)

// world is a group of simulated members, each protected to its own backup
// over loopback TCP, and a checker of the global commit: when a member's
// output of round r leaves, every member's backup holds its round r and a
// checkpoint after it.
type world struct {
	members []*group.LocalMember
	backups []*checkpointer.Backup
	mu      sync.Mutex
	errs    []string
	commits int
}

// checkOut is a member's real output: it checks the global commit at
// every release.
type checkOut struct {
	w *world
	i int
	*checkpointer.EpochCounter
}

func (o *checkOut) Release(e uint64) error {
	w := o.w
	r, ok := w.members[o.i].Output().RoundOf(e)
	if !ok {
		return nil // the epoch before the first round
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	w.commits++
	// Round r is committed once every backup holds a checkpoint its member
	// took after round r's (the channel state of cut r is logged before it).
	for j, m := range w.members {
		st := w.backups[j].Status()
		held := max(st.Epoch, st.Staged)
		if ej, ok := m.Output().RoundEpoch(r); !ok || held <= ej {
			w.errs = append(w.errs, fmt.Sprintf("member %d released round %d while member %d's backup holds epoch %d, its round %d epoch %d", o.i, r, j, held, r, ej))
		}
	}
	return o.EpochCounter.Release(e)
}

// newWorld starts n members; slow delays member n-1's ACKs by lag.
func newWorld(t testing.TB, n int, lag time.Duration) *world {
	return newWorldWith(t, n, worldOpts{lag: lag})
}

// worldOpts shape a world: lag delays the last member's backup link; with
// a stop-the-world barrier, no member's guest resumes from a round's
// pause before every member captured that round (the VNsnap-style
// baseline); onEpoch sees every member's epochs; varied gives member i
// a working set (2i+1) times the first's, so captures differ in length.
type worldOpts struct {
	lag     time.Duration
	stw     *barrier
	onEpoch func(i int, st checkpointer.EpochStats)
	varied  bool
}

// barrier is a cyclic barrier of n parties, off until armed.
type barrier struct {
	mu      sync.Mutex
	cond    *sync.Cond
	n, in   int
	gen     uint64
	armed   bool
	stopped bool
}

func newBarrier(n int) *barrier {
	b := &barrier{n: n}
	b.cond = sync.NewCond(&b.mu)
	return b
}

func (b *barrier) arm(on bool) {
	b.mu.Lock()
	b.armed, b.stopped = on, !on
	b.in = 0
	b.gen++
	b.cond.Broadcast()
	b.mu.Unlock()
}

// wait returns once n parties waited (or the barrier is disarmed).
func (b *barrier) wait() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.armed {
		return
	}
	gen := b.gen
	if b.in++; b.in == b.n {
		b.in, b.gen = 0, b.gen+1
		b.cond.Broadcast()
		return
	}
	for gen == b.gen && !b.stopped {
		b.cond.Wait()
	}
}

// stwDomain is a member's guest under a stop-the-world group snapshot:
// it resumes only once every member's guest captured the round.
type stwDomain struct {
	*sim.Domain
	b *barrier
}

func (d stwDomain) Resume(ctx context.Context) error {
	d.b.wait()
	return d.Domain.Resume(ctx)
}

func newWorldWith(t testing.TB, n int, o worldOpts) *world {
	lag := o.lag
	w := &world{}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	t.Cleanup(func() { cancel(); wg.Wait() })
	for i := range n {
		replica := sim.NewReplica(1 << 20)
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		cfg := sim.Config{Name: fmt.Sprintf("vm%d", i), MemSize: 1 << 20, Seed: uint64(i + 1), WritesPerMs: 20, HotPages: 64}
		if o.varied {
			cfg.MemSize, cfg.WritesPerMs, cfg.HotPages = 8<<20, 20*(2*i+1), uint64(64*(2*i+1))
			replica = sim.NewReplica(cfg.MemSize)
		}
		b, err := checkpointer.NewBackup(checkpointer.BackupConfig{VM: cfg.Name, Replica: replica, Standby: sim.NewStandby(cfg, replica),
			Codec: codec.Raw{}, Listener: ln, HeartbeatInterval: 20 * time.Millisecond, HeartbeatTimeout: 10 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		wg.Go(func() { _ = b.Serve(ctx) })
		addr := ln.Addr().String()
		if i == n-1 && lag > 0 {
			addr = lagProxy(t, addr, lag)
		}
		dial, _ := wire.Dialer(addr, wire.TLSFiles{}, time.Second)
		dom := sim.NewDomain(cfg)
		dom.Start()
		t.Cleanup(dom.Stop)
		pc := checkpointer.PrimaryConfig{Domain: dom, Output: &checkOut{w: w, i: i, EpochCounter: checkpointer.NewEpochCounterAt(1)},
			Codec: codec.Raw{}, Dial: dial, Interval: time.Hour, HeartbeatInterval: 20 * time.Millisecond, HeartbeatTimeout: 10 * time.Second}
		if o.stw != nil {
			pc.Domain = stwDomain{dom, o.stw}
		}
		if o.onEpoch != nil {
			pc.OnEpoch = func(st checkpointer.EpochStats) { o.onEpoch(i, st) }
		}
		m, err := group.NewLocalMember(cfg.Name, pc)
		if err != nil {
			t.Fatal(err)
		}
		wg.Go(func() { _ = m.Run(ctx) })
		w.members = append(w.members, m)
		w.backups = append(w.backups, b)
	}
	for _, m := range w.members {
		deadline := time.Now().Add(20 * time.Second)
		for m.P.Status().State != checkpointer.StateProtected {
			if time.Now().After(deadline) {
				t.Fatalf("%s never protected: %+v", m.Name(), m.P.Status())
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	return w
}

func (w *world) coordinator(unsafe bool, rounds *int) *group.Coordinator {
	ms := make([]group.Member, len(w.members))
	for i, m := range w.members {
		ms[i] = m
	}
	return &group.Coordinator{Members: ms, Interval: 10 * time.Millisecond, RoundTimeout: 5 * time.Second,
		UnsafePerMemberCommit: unsafe, OnRound: func(group.RoundStats) { *rounds++ }}
}

// Every member's output of a round leaves only once every member's backup
// holds that round; with per-member commits (the negative control) a
// member whose backup answers late shows the violation.
func TestGlobalCommit(t *testing.T) {
	for _, unsafe := range []bool{false, true} {
		t.Run(fmt.Sprintf("unsafe=%v", unsafe), func(t *testing.T) {
			w := newWorld(t, 3, 20*time.Millisecond)
			rounds := 0
			c := w.coordinator(unsafe, &rounds)
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			if err := c.Run(ctx); err != nil {
				t.Fatal(err)
			}
			w.mu.Lock()
			defer w.mu.Unlock()
			t.Logf("%d rounds, %d releases checked, %d violations", rounds, w.commits, len(w.errs))
			if rounds < 5 || w.commits < 5 {
				t.Fatalf("only %d rounds, %d releases", rounds, w.commits)
			}
			if unsafe && len(w.errs) == 0 {
				t.Fatal("per-member commits with a late backup: no violation seen, the checker cannot tell")
			}
			if !unsafe && len(w.errs) > 0 {
				t.Fatalf("global commit violated: %s", w.errs[0])
			}
		})
	}
}

// hung is a member that never completes a round.
type hung struct{ committed bool }

func (h *hung) Name() string { return "hung" }
func (h *hung) Round(ctx context.Context, _ uint64) (group.Done, error) {
	<-ctx.Done()
	return group.Done{}, ctx.Err()
}
func (h *hung) Abort(context.Context, uint64) error { return errors.New("hung") }
func (h *hung) Commit(uint64) error                 { h.committed = true; return nil }
func (h *hung) State(context.Context, uint64) (group.State, error) {
	return group.State{}, nil
}

// A member that never reaches round r fails it after RoundTimeout: the
// coordinator names it and commits the round to nobody.
func TestHungMemberFailsTheRound(t *testing.T) {
	w := newWorld(t, 2, 0)
	h := &hung{}
	rounds := 0
	c := w.coordinator(false, &rounds)
	c.Members = append(c.Members, h)
	c.RoundTimeout = 200 * time.Millisecond
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err := c.Run(ctx)
	if !errors.Is(err, group.ErrMemberFailed) || !strings.Contains(err.Error(), "hung in round 1") {
		t.Fatalf("Run: %v, want the hung member's failure in round 1", err)
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if rounds != 0 || w.commits != 0 || h.committed {
		t.Fatalf("round 1 committed (%d rounds, %d releases) although a member failed it", rounds, w.commits)
	}
}

// lagProxy forwards TCP to target, delaying every chunk from the target
// (the backup's ACKs) by lag.
func lagProxy(t testing.TB, target string, lag time.Duration) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
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
			go func() { _, _ = io.Copy(u, c); u.Close() }()
			go func() {
				defer c.Close()
				buf := make([]byte, 32<<10)
				for {
					n, err := u.Read(buf)
					if n > 0 {
						time.Sleep(lag)
						if _, werr := c.Write(buf[:n]); werr != nil {
							return
						}
					}
					if err != nil {
						return
					}
				}
			}()
		}
	}()
	return ln.Addr().String()
}

// BenchmarkGroupCommit measures, for 2, 3 and 4 simulated members whose
// working sets differ (1x, 3x, 5x, 7x), side by side: the global commit
// latency (round start to every backup holding it), the members' pause
// skew, and each guest's pause per round (its downtime) under VDEchp
// (each guest pauses for its own capture only) and under a stop-the-world
// group snapshot (VNsnap-style: no guest resumes before every guest
// captured the round). The stop-the-world barrier is in-process, so the
// baseline pays no network round for it: its figures are a lower bound.
func BenchmarkGroupCommit(b *testing.B) {
	for _, stw := range []bool{false, true} {
		for _, n := range []int{2, 3, 4} {
			name := map[bool]string{false: "vdechp", true: "stop-the-world"}[stw]
			b.Run(fmt.Sprintf("%s/members=%d", name, n), func(b *testing.B) {
				benchGroup(b, n, stw)
			})
		}
	}
}

func benchGroup(b *testing.B, n int, stw bool) {
	var (
		mu                   sync.Mutex
		measuring            bool
		pauses               int
		pauseSum, pauseWorst time.Duration
	)
	o := worldOpts{varied: true, onEpoch: func(_ int, st checkpointer.EpochStats) {
		mu.Lock()
		if measuring {
			pauses++
			pauseSum += st.Pause
			pauseWorst = max(pauseWorst, st.Pause)
		}
		mu.Unlock()
	}}
	if stw {
		o.stw = newBarrier(n)
	}
	w := newWorldWith(b, n, o)
	if stw {
		o.stw.arm(true)
		b.Cleanup(func() { o.stw.arm(false) })
	}
	ms := make([]group.Member, n)
	for i, m := range w.members {
		ms[i] = m
	}
	var commit, skew time.Duration
	rounds := 0
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	c := &group.Coordinator{Members: ms, Interval: 5 * time.Millisecond, RoundTimeout: 10 * time.Second,
		OnRound: func(st group.RoundStats) {
			rounds++
			commit += st.Commit
			skew += st.Skew
			if rounds >= b.N {
				cancel()
			}
		}}
	mu.Lock()
	measuring = true
	mu.Unlock()
	b.ResetTimer()
	if err := c.Run(ctx); err != nil {
		b.Fatal(err)
	}
	b.StopTimer()
	mu.Lock()
	measuring = false
	mu.Unlock()
	b.ReportMetric(float64(commit.Microseconds())/float64(rounds), "commit-us")
	b.ReportMetric(float64(skew.Microseconds())/float64(rounds), "skew-us")
	if pauses > 0 {
		b.ReportMetric(float64(pauseSum.Microseconds())/float64(pauses), "pause-us")
		b.ReportMetric(float64(pauseWorst.Microseconds()), "pause-max-us")
	}
}

// The same global commit with the coordinator reaching its members over
// their TCP links (ServeMember, RemoteMember); then a member agent that
// disappears fails the round, named.
func TestRemoteMembers(t *testing.T) {
	w := newWorld(t, 3, 0)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ms := make([]group.Member, len(w.members))
	var lns []net.Listener
	for i, m := range w.members {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		lns = append(lns, ln)
		sctx, scancel := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() { done <- group.ServeMember(sctx, ln, m, nil) }()
		t.Cleanup(func() {
			scancel()
			if err := <-done; err != nil && !strings.Contains(err.Error(), "use of closed") {
				t.Errorf("member server: %v", err)
			}
		})
		dial, _ := wire.Dialer(ln.Addr().String(), wire.TLSFiles{}, time.Second)
		rm := group.NewRemoteMember(m.Name(), dial)
		t.Cleanup(rm.Close)
		ms[i] = rm
	}
	rounds := 0
	c := &group.Coordinator{Members: ms, Interval: 10 * time.Millisecond, RoundTimeout: 2 * time.Second,
		OnRound: func(group.RoundStats) {
			rounds++
			if rounds == 20 {
				// Member vm1's agent goes away: its listener and its link.
				lns[1].Close()
				ms[1].(*group.RemoteMember).Close()
			}
		}}
	rctx, rcancel := context.WithTimeout(ctx, 20*time.Second)
	defer rcancel()
	err := c.Run(rctx)
	if !errors.Is(err, group.ErrMemberFailed) || !strings.Contains(err.Error(), "vm1") {
		t.Fatalf("Run: %v, want vm1's failure", err)
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	t.Logf("%d rounds committed over TCP links, %d releases checked; then: %v", rounds, w.commits, err)
	if rounds < 20 || len(w.errs) > 0 {
		t.Fatalf("%d rounds, violations %q", rounds, w.errs)
	}
}

// The group links run over mutual TLS: a coordinator with a certificate of
// the members' CA drives rounds; one with another CA's certificate is
// refused in the handshake and its round fails, naming the member.
func TestRemoteMembersTLS(t *testing.T) {
	w := newWorld(t, 2, 0)
	ca, other := pki.NewCA(t, "group-ca"), pki.NewCA(t, "other-ca")
	agent := ca.Issue(t, "member", 2)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var addrs []string
	for _, m := range w.members {
		ln, err := wire.Listen("127.0.0.1:0", agent, nil)
		if err != nil {
			t.Fatal(err)
		}
		addrs = append(addrs, ln.Addr().String())
		done := make(chan error, 1)
		go func() { done <- group.ServeMember(ctx, ln, m, nil) }()
		t.Cleanup(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("member server: %v", err)
			}
		})
	}
	for _, tc := range []struct {
		name  string
		files wire.TLSFiles
		ok    bool
	}{{"same CA", ca.Issue(t, "coordinator", 3), true}, {"other CA", other.Issue(t, "intruder", 4), false}} {
		ms := make([]group.Member, len(addrs))
		for i, a := range addrs {
			dial, err := wire.Dialer(a, tc.files, time.Second)
			if err != nil {
				t.Fatal(err)
			}
			rm := group.NewRemoteMember(w.members[i].Name(), dial)
			t.Cleanup(rm.Close)
			ms[i] = rm
		}
		rounds := 0
		rctx, rcancel := context.WithTimeout(ctx, 10*time.Second)
		c := &group.Coordinator{Members: ms, Interval: 10 * time.Millisecond, RoundTimeout: 2 * time.Second,
			OnRound: func(group.RoundStats) {
				if rounds++; rounds == 5 {
					rcancel()
				}
			}}
		err := c.Run(rctx)
		rcancel()
		switch {
		case tc.ok && (err != nil || rounds < 5):
			t.Fatalf("%s: %d rounds, %v", tc.name, rounds, err)
		case !tc.ok && (!errors.Is(err, group.ErrMemberFailed) || rounds != 0):
			t.Fatalf("%s: %d rounds, %v; want the round refused", tc.name, rounds, err)
		}
		t.Logf("%s: %d rounds, %v", tc.name, rounds, err)
	}
}
