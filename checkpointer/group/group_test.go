// SPDX-License-Identifier: Apache-2.0

package group_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
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
	// stopBackup[i] stops member i's backup (its host dies).
	stopBackup []context.CancelFunc
	mu         sync.Mutex
	errs       []string
	commits    int
	// released is each member's last epoch released, round or not.
	released map[int]uint64
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
	w.mu.Lock()
	defer w.mu.Unlock()
	w.released[o.i] = e
	r, ok := w.members[o.i].Output().RoundOf(e)
	if !ok {
		return o.EpochCounter.Release(e) // the epoch before the first round, or unprotected
	}
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

// worldOpts shape a world: lag delays the last member's backup link;
// pauses, if set, sees every member guest's pauses and resumes; onEpoch
// sees every member's epochs; varied gives member i a working set (2i+1)
// times the first's, so captures differ in length.
type worldOpts struct {
	lag     time.Duration
	onLoss  checkpointer.LossPolicy
	pauses  *pauseLog
	onEpoch func(i int, st checkpointer.EpochStats)
	varied  bool
}

// pauseLog checks the stop-the-world rule on the members' guests: a guest
// resumes only while every guest of the group is paused for the same
// round or has already resumed from it.
type pauseLog struct {
	mu         sync.Mutex
	n          int
	paused     map[int]bool
	resumed    map[int]bool
	rounds     int
	violations int
}

func newPauseLog(n int) *pauseLog {
	l := &pauseLog{n: n}
	l.reset()
	return l
}

// reset forgets what happened so far (the members' own first epochs).
func (l *pauseLog) reset() {
	l.mu.Lock()
	l.paused, l.resumed, l.rounds, l.violations = map[int]bool{}, map[int]bool{}, 0, 0
	l.mu.Unlock()
}

func (l *pauseLog) pause(i int) {
	l.mu.Lock()
	l.paused[i] = true
	l.mu.Unlock()
}

func (l *pauseLog) resume(i int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.paused)+len(l.resumed) < l.n {
		l.violations++
	}
	delete(l.paused, i)
	if l.resumed[i] { // a pause of its own (not a round's)
		return
	}
	if l.resumed[i] = true; len(l.resumed) == l.n {
		l.resumed, l.rounds = map[int]bool{}, l.rounds+1
	}
}

// loggedDomain reports its guest's pauses and resumes to a pauseLog.
type loggedDomain struct {
	*sim.Domain
	i int
	l *pauseLog
}

func (d loggedDomain) Pause(ctx context.Context) error {
	err := d.Domain.Pause(ctx)
	d.l.pause(d.i)
	return err
}

func (d loggedDomain) Resume(ctx context.Context) error {
	d.l.resume(d.i)
	return d.Domain.Resume(ctx)
}

func newWorldWith(t testing.TB, n int, o worldOpts) *world {
	lag := o.lag
	w := &world{released: map[int]uint64{}}
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
		bctx, stop := context.WithCancel(ctx)
		w.stopBackup = append(w.stopBackup, stop)
		wg.Go(func() { _ = b.Serve(bctx) })
		addr := ln.Addr().String()
		if i == n-1 && lag > 0 {
			addr = lagProxy(t, addr, lag)
		}
		dial, _ := wire.Dialer(addr, wire.TLSFiles{}, time.Second)
		dom := sim.NewDomain(cfg)
		dom.Start()
		t.Cleanup(dom.Stop)
		pc := checkpointer.PrimaryConfig{Domain: dom, Output: &checkOut{w: w, i: i, EpochCounter: checkpointer.NewEpochCounterAt(1)},
			Codec: codec.Raw{}, Dial: dial, Interval: time.Hour, HeartbeatInterval: 20 * time.Millisecond, HeartbeatTimeout: 10 * time.Second,
			OnBackupLoss: o.onLoss}
		if o.onLoss == checkpointer.LossContinue {
			// Unprotected epochs are released every Interval.
			pc.Interval, pc.HeartbeatTimeout, pc.RetryInterval = 20*time.Millisecond, 200*time.Millisecond, 50*time.Millisecond
		}
		if o.pauses != nil {
			pc.Domain = loggedDomain{dom, i, o.pauses}
		}
		if o.onEpoch != nil {
			pc.OnEpoch = func(st checkpointer.EpochStats) { o.onEpoch(i, st) }
		}
		m, err := group.NewLocalMember(cfg.Name, pc)
		if err != nil {
			t.Fatal(err)
		}
		w.mu.Lock() // a member's releases may begin before the last one is built
		w.members = append(w.members, m)
		w.backups = append(w.backups, b)
		w.mu.Unlock()
		wg.Go(func() { _ = m.Run(ctx) })
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

// leaveColours is a member's colouring that only records Leave.
type leaveColours struct{ left atomic.Int32 }

func (*leaveColours) SetRound(uint32) error           { return nil }
func (*leaveColours) ReleaseHeld(uint32) (int, error) { return 0, nil }
func (c *leaveColours) Leave() error                  { c.left.Add(1); return nil }

// When the backups' host dies with the coordinator on it, the members'
// primaries are on their own: with the continue loss policy their output
// leaves unprotected (a group member's gated output would otherwise hold
// it for a commit that never comes), they stop colouring, and they forget
// the rounds they took, so that no coordinator started later resumes the
// group from before what they released. With block (the default) nothing
// leaves: the control that shows the check can fail.
func TestBackupHostLoss(t *testing.T) {
	for _, policy := range []checkpointer.LossPolicy{checkpointer.LossContinue, checkpointer.LossBlock} {
		t.Run(string(policy), func(t *testing.T) {
			w := newWorldWith(t, 2, worldOpts{onLoss: policy})
			colours := make([]*leaveColours, len(w.members))
			for i, m := range w.members {
				colours[i] = &leaveColours{}
				if err := m.SetColours(colours[i]); err != nil {
					t.Fatal(err)
				}
			}
			rounds := 0
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			c := w.coordinator(false, &rounds)
			c.OnRound = func(st group.RoundStats) {
				if rounds++; rounds == 5 {
					cancel() // the coordinator dies with the backups' host
				}
			}
			if err := c.Run(ctx); err != nil {
				t.Fatal(err)
			}
			w.mu.Lock()
			before := maps.Clone(w.released)
			w.mu.Unlock()
			for _, stop := range w.stopBackup {
				stop()
			}
			time.Sleep(time.Second)
			{
				// A coordinator started now finds members without a
				// backup: it neither commits nor rolls anything back, and
				// (continue) learns no round from before what they released.
				var sbs []group.Standby
				for i, m := range w.members {
					sbs = append(sbs, group.LocalStandby{Member: m.Name(), B: w.backups[i]})
				}
				n := 0
				c := w.coordinator(false, &n)
				var recovered bool
				c.Standbys, c.RoundTimeout, c.OnRecovery = sbs, 300*time.Millisecond, func(group.Recovery) { recovered = true }
				cctx, ccancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
				err := c.Run(cctx)
				ccancel()
				if err != nil || n != 0 || recovered {
					t.Errorf("a coordinator started with every backup gone: %v, %d rounds committed, recovered %v; want it to go on asking", err, n, recovered)
				}
			}
			w.mu.Lock()
			defer w.mu.Unlock()
			for i, m := range w.members {
				st, _ := m.State(context.Background(), 4)
				t.Logf("%s: state %s, released epoch %d before the loss, %d after; left colours %d times; epoch of round 4 now %d",
					m.Name(), m.P.Status().State, before[i], w.released[i], colours[i].left.Load(), st.Epoch)
				switch policy {
				case checkpointer.LossContinue:
					if w.released[i] < before[i]+10 || colours[i].left.Load() == 0 || st.Epoch != 0 || m.P.Status().State != checkpointer.StateUnprotected {
						t.Errorf("%s: continue policy, backup gone: output not flowing, colours kept or rounds remembered", m.Name())
					}
				case checkpointer.LossBlock:
					if w.released[i] != before[i] || colours[i].left.Load() != 0 || st.Epoch == 0 {
						t.Errorf("%s: block policy, backup gone: output released or the group's rounds forgotten", m.Name())
					}
				}
			}
		})
	}
}

// remoteMembers serves w's members on loopback links and returns the
// coordinator's ends of them.
func remoteMembers(t testing.TB, w *world) []group.Member {
	return linksTo(t, w, serveMembers(t, w))
}

// serveMembers serves w's members on loopback links and returns their
// dialers, by member.
func serveMembers(t testing.TB, w *world) []func(context.Context) (net.Conn, error) {
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	dials := make([]func(context.Context) (net.Conn, error), len(w.members))
	for i, m := range w.members {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		go func() { _ = group.ServeMember(ctx, ln, m, nil) }()
		dials[i], _ = wire.Dialer(ln.Addr().String(), wire.TLSFiles{}, time.Second)
	}
	return dials
}

// linksTo returns a new set of links to w's members (one coordinator's).
func linksTo(t testing.TB, w *world, dials []func(context.Context) (net.Conn, error)) []group.Member {
	ms := make([]group.Member, len(w.members))
	for i, m := range w.members {
		rm := group.NewRemoteMember(m.Name(), dials[i])
		t.Cleanup(rm.Close)
		ms[i] = rm
	}
	return ms
}

// Under Coordinator.StopTheWorld (over the members' TCP links: HALT, then
// ROUND) no guest resumes from a round before every guest paused for it;
// the negative control, VDEchp's rounds with the members' pauses
// staggered, shows guests resuming while others still run.
func TestStopTheWorld(t *testing.T) {
	for _, stw := range []bool{true, false} {
		t.Run(fmt.Sprintf("stop-the-world=%v", stw), func(t *testing.T) {
			pauses := newPauseLog(3)
			w := newWorldWith(t, 3, worldOpts{pauses: pauses})
			rounds := 0
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			c := &group.Coordinator{Members: remoteMembers(t, w), Interval: 10 * time.Millisecond, RoundTimeout: 5 * time.Second,
				StopTheWorld: stw, OnRound: func(group.RoundStats) {
					if rounds++; rounds == 20 {
						cancel()
					}
				}}
			if !stw {
				c.Stagger = 3 * time.Millisecond
			}
			pauses.reset()
			if err := c.Run(ctx); err != nil {
				t.Fatal(err)
			}
			pauses.mu.Lock()
			defer pauses.mu.Unlock()
			w.mu.Lock()
			defer w.mu.Unlock()
			t.Logf("%d rounds, %d group pauses seen, %d resumes while a guest ran; %d releases checked", rounds, pauses.rounds, pauses.violations, w.commits)
			if rounds < 20 || pauses.rounds < 15 || len(w.errs) > 0 {
				t.Fatalf("%d rounds, %d group pauses, global commit violations %q", rounds, pauses.rounds, w.errs)
			}
			if stw && pauses.violations > 0 {
				t.Fatalf("stop-the-world: %d guests resumed while another ran", pauses.violations)
			}
			if !stw && pauses.violations == 0 {
				t.Fatal("staggered VDEchp rounds: no guest resumed while another ran; the checker cannot tell")
			}
		})
	}
	// A member that cannot halt is refused before any round.
	c := &group.Coordinator{Members: []group.Member{&hung{}}, Interval: time.Millisecond, StopTheWorld: true}
	if err := c.Run(context.Background()); err == nil || !strings.Contains(err.Error(), "stop-the-world") {
		t.Fatalf("a member without Halt: %v", err)
	}
}

// BenchmarkGroupCommit measures, for 2, 3 and 4 simulated members whose
// working sets differ (1x, 3x, 5x, 7x), side by side: the global commit
// latency (round start to every backup holding it), the members' pause
// skew, and each guest's pause per round (its downtime) under VDEchp
// (each guest pauses for its own capture only) and under a stop-the-world
// group snapshot (Coordinator.StopTheWorld, VNsnap-style: no guest
// resumes before every guest captured the round). The members are local:
// the stop-the-world round's extra exchange (HALT) costs no network
// round trip here, so its figures are a lower bound.
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
	w := newWorldWith(b, n, o)
	ms := make([]group.Member, n)
	for i, m := range w.members {
		ms[i] = m
	}
	var commit, skew time.Duration
	rounds := 0
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	c := &group.Coordinator{Members: ms, Interval: 5 * time.Millisecond, RoundTimeout: 10 * time.Second, StopTheWorld: stw,
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

// The coordinator's /status and /metrics (group coordinate --metrics-addr)
// say whether the group is protected and from which round it resumes.
func TestStatusHTTP(t *testing.T) {
	w := newWorld(t, 2, 0)
	reg := prometheus.NewRegistry()
	rounds := 0
	c := w.coordinator(false, &rounds)
	c.Metrics = group.NewMetrics(reg)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ready := make(chan string, 1)
	go func() { _ = checkpointer.ServeAgentHTTP(ctx, "127.0.0.1:0", reg, c.Status, nil, ready, nil) }()
	addr := <-ready
	rctx, stop := context.WithCancel(ctx)
	c.OnRound = func(group.RoundStats) {
		if rounds++; rounds == 10 {
			stop()
		}
	}
	if err := c.Run(rctx); err != nil {
		t.Fatal(err)
	}
	st, err := checkpointer.FetchStatusOf[group.Status](ctx, addr)
	if err != nil {
		t.Fatal(err)
	}
	if st.Role != "coordinator" || st.State != group.StateCommitting || st.Rounds != 10 || st.Committed+1 != st.Held || st.Round < st.Held {
		t.Fatalf("status %+v", st)
	}
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/metrics", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	for _, want := range []string{"resilire_group_rounds_total 10", fmt.Sprintf("resilire_group_committed_round %d", st.Committed),
		`resilire_group_state{state="committing"} 1`, "resilire_group_members_without_backup 0"} {
		if !strings.Contains(string(body), want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
}
