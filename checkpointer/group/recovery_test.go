// SPDX-License-Identifier: Apache-2.0

package group_test

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/resilire/resilire/checkpointer"
	"github.com/resilire/resilire/checkpointer/codec"
	"github.com/resilire/resilire/checkpointer/group"
	"github.com/resilire/resilire/checkpointer/sim"
	"github.com/resilire/resilire/checkpointer/wire"
)

// rbMember is one simulated member of a recovery world: its guest, its
// primary's output (which records the guest's memory at every epoch), its
// backup and what the backup resumed from.
type rbMember struct {
	dom    *sim.Domain
	m      *group.LocalMember
	b      *checkpointer.Backup // the current backup (under mu once a test restarts it)
	cancel context.CancelFunc   // kills the primary (its host)
	// startBackup starts a new backup on addr (the first: any port);
	// stopBackup kills the current one.
	startBackup func(addr string)
	stopBackup  func()
	addr        string
	backupDown  bool // its backup was stopped: it answers no order (under mu)

	mu      sync.Mutex
	atEpoch map[uint64][32]byte // guest memory when the epoch closed
	resumed [32]byte            // replica memory the guest resumed from
	fenced  bool
}

// hashOut records the guest's memory at each epoch's close (the guest is
// paused there: that is what the checkpoint holds).
type hashOut struct {
	rm *rbMember
	*checkpointer.EpochCounter
}

func (o *hashOut) Advance() (uint64, error) {
	e, err := o.EpochCounter.Advance()
	o.rm.mu.Lock()
	o.rm.atEpoch[e] = o.rm.dom.Hash()
	o.rm.mu.Unlock()
	return e, err
}

// hashStandby records the replica the guest resumes from.
type hashStandby struct {
	rm      *rbMember
	replica *sim.Replica
	*sim.Standby
}

func (s *hashStandby) Activate(ctx context.Context, state []byte) error {
	s.rm.mu.Lock()
	s.rm.resumed = sha256.Sum256(s.replica.Memory())
	s.rm.mu.Unlock()
	return s.Standby.Activate(ctx, state)
}

type fenceFunc func(context.Context, checkpointer.FenceRequest) error

func (f fenceFunc) Fence(ctx context.Context, r checkpointer.FenceRequest) error { return f(ctx, r) }

// newRecoveryWorld starts n members whose backups are group backups (or,
// for the negative control, plain ones that fail over on their own).
func newRecoveryWorld(t *testing.T, n int, groupBackups bool) []*rbMember {
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	t.Cleanup(func() { cancel(); wg.Wait() })
	var rms []*rbMember
	for i := range n {
		cfg := sim.Config{Name: fmt.Sprintf("vm%d", i), MemSize: 1 << 20, Seed: uint64(i + 1), WritesPerMs: 20, HotPages: 64}
		rm := &rbMember{dom: sim.NewDomain(cfg), atEpoch: map[uint64][32]byte{}}
		rm.startBackup = func(addr string) {
			t.Helper()
			replica := sim.NewReplica(1 << 20)
			ln, err := net.Listen("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			fence := fenceFunc(func(context.Context, checkpointer.FenceRequest) error {
				rm.dom.Stop() // the old primary's guest is gone for good
				rm.mu.Lock()
				rm.fenced = true
				rm.mu.Unlock()
				return nil
			})
			st := &hashStandby{rm: rm, replica: replica, Standby: sim.NewStandby(cfg, replica)}
			t.Cleanup(func() { _ = st.Close() })
			b, err := checkpointer.NewBackup(checkpointer.BackupConfig{VM: cfg.Name, Replica: replica, Standby: st, Codec: codec.Raw{},
				Listener: ln, HeartbeatInterval: 20 * time.Millisecond, HeartbeatTimeout: 300 * time.Millisecond,
				Failover: checkpointer.FailoverConfig{Fence: fence}, Group: groupBackups})
			if err != nil {
				t.Fatal(err)
			}
			bctx, stop := context.WithCancel(ctx)
			rm.mu.Lock()
			rm.b, rm.addr, rm.backupDown = b, ln.Addr().String(), false
			rm.stopBackup = func() {
				stop()
				rm.mu.Lock()
				rm.backupDown = true
				rm.mu.Unlock()
			}
			rm.mu.Unlock()
			wg.Go(func() { _ = b.Serve(bctx) })
		}
		rm.startBackup("127.0.0.1:0")
		dial, _ := wire.Dialer(rm.addr, wire.TLSFiles{}, time.Second)
		rm.dom.Start()
		t.Cleanup(rm.dom.Stop)
		var err error
		rm.m, err = group.NewLocalMember(cfg.Name, checkpointer.PrimaryConfig{Domain: rm.dom,
			Output: &hashOut{rm: rm, EpochCounter: checkpointer.NewEpochCounterAt(1)}, Codec: codec.Raw{}, Dial: dial,
			Interval: time.Hour, HeartbeatInterval: 20 * time.Millisecond, HeartbeatTimeout: 300 * time.Millisecond, Pipeline: i%2 == 1})
		if err != nil {
			t.Fatal(err)
		}
		mctx, mcancel := context.WithCancel(ctx)
		rm.cancel = mcancel
		wg.Go(func() { _ = rm.m.Run(mctx) })
		rms = append(rms, rm)
	}
	for _, rm := range rms {
		deadline := time.Now().Add(20 * time.Second)
		for rm.m.P.Status().State != checkpointer.StateProtected {
			if time.Now().After(deadline) {
				t.Fatalf("%s never protected: %+v", rm.m.Name(), rm.m.P.Status())
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	return rms
}

// liveStandby is a member's current backup, whichever it is (a test may
// restart it).
type liveStandby struct{ rm *rbMember }

func (s liveStandby) cur() (group.LocalStandby, error) {
	s.rm.mu.Lock()
	defer s.rm.mu.Unlock()
	if s.rm.backupDown {
		return group.LocalStandby{}, errors.New("backup down")
	}
	return group.LocalStandby{Member: s.rm.m.Name(), B: s.rm.b}, nil
}

func (s liveStandby) Name() string { return s.rm.m.Name() }
func (s liveStandby) CanActivateAt(ctx context.Context, r, e uint64) error {
	b, err := s.cur()
	if err != nil {
		return err
	}
	return b.CanActivateAt(ctx, r, e)
}
func (s liveStandby) ActivateAt(ctx context.Context, r, e uint64) error {
	b, err := s.cur()
	if err != nil {
		return err
	}
	return b.ActivateAt(ctx, r, e)
}

// A member's backup dies, its primary alive: nothing is rolled back (no
// member aborted, no backup activated), nothing commits while it is away,
// and once a new backup is synchronised the group commits again. Then a
// primary dies: the group recovers as usual, from a round taken after the
// new backup joined.
func TestMemberLosesBackup(t *testing.T) {
	rms := newRecoveryWorld(t, 3, true)
	ms := make([]group.Member, len(rms))
	sbs := make([]group.Standby, len(rms))
	for i, rm := range rms {
		ms[i], sbs[i] = rm.m, liveStandby{rm}
	}
	var (
		mu        sync.Mutex
		committed []uint64
		rec       *group.Recovery
	)
	rounds := func() int { mu.Lock(); defer mu.Unlock(); return len(committed) }
	c := &group.Coordinator{Members: ms, Standbys: sbs, Interval: 10 * time.Millisecond, RoundTimeout: 2 * time.Second,
		RecoveryTimeout: 20 * time.Second,
		OnRound:         func(st group.RoundStats) { mu.Lock(); committed = append(committed, st.Round); mu.Unlock() },
		OnRecovery:      func(r group.Recovery) { mu.Lock(); rec = &r; mu.Unlock() }}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	wait := func(what string, f func() bool) {
		t.Helper()
		for deadline := time.Now().Add(30 * time.Second); !f(); time.Sleep(10 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("waiting for %s", what)
			}
		}
	}
	wait("10 rounds", func() bool { return rounds() >= 10 })
	if st := c.Status(); st.State != group.StateCommitting || st.Committed == 0 || len(st.WithoutBackup) != 0 {
		t.Errorf("status while committing: %+v", st)
	}
	rms[1].stopBackup() // vm1's backup dies; its primary runs on
	time.Sleep(time.Second)
	if st := c.Status(); st.State != group.StateWithoutBackup || st.Committed != 0 || !slices.Equal(st.WithoutBackup, []string{"vm1"}) {
		t.Errorf("status while vm1 has no backup: %+v", st)
	}
	during := rounds()
	time.Sleep(500 * time.Millisecond)
	if n := rounds(); n != during {
		t.Fatalf("%d rounds completed while vm1 had no backup", n-during)
	}
	rms[1].startBackup(rms[1].addr)
	wait("rounds after vm1's new backup", func() bool { return rounds() >= during+10 })
	mu.Lock()
	again := committed[during]
	mu.Unlock()
	rms[2].cancel() // now vm2's host dies
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-ctx.Done():
		t.Fatal("no recovery")
	}
	if st := c.Status(); st.State != group.StateRecovered || st.Recovery == nil {
		t.Errorf("status after the recovery: %+v", st)
	}
	mu.Lock()
	defer mu.Unlock()
	if rec == nil || rec.Round < again {
		t.Fatalf("recovery %+v, want one from a round after %d (vm1's new backup joined)", rec, again)
	}
	for _, rm := range rms {
		rm.mu.Lock()
		want, ok := rm.atEpoch[rec.Epochs[rm.m.Name()]]
		if !ok || rm.resumed != want {
			t.Errorf("%s did not resume from round %d's checkpoint", rm.m.Name(), rec.Round)
		}
		rm.mu.Unlock()
	}
	t.Logf("rounds committed before the backup's loss ... %d; first after its return %d; recovered from round %d", during, again, rec.Round)
}

// silentMember takes rounds until silent is set, then hangs in them (its
// backup's host went silent, and its primary has not noticed yet) while
// still answering STATE; its backup (silentStandby) answers no order
// while silent.
type silentMember struct{ silent *atomic.Bool }

func (silentMember) Name() string { return "vm9" }
func (m silentMember) Round(ctx context.Context, r uint64) (group.Done, error) {
	if m.silent.Load() {
		<-ctx.Done()
		return group.Done{}, ctx.Err()
	}
	return group.Done{Paused: time.Now(), Epoch: r}, nil
}
func (silentMember) Commit(uint64) error                 { return nil }
func (silentMember) Abort(context.Context, uint64) error { return nil }
func (silentMember) State(context.Context, uint64) (group.State, error) {
	return group.State{}, nil
}

type silentStandby struct{ silent *atomic.Bool }

func (silentStandby) Name() string { return "vm9" }
func (s silentStandby) CanActivateAt(ctx context.Context, _, _ uint64) error {
	if s.silent.Load() {
		<-ctx.Done()
		return ctx.Err()
	}
	return nil
}
func (s silentStandby) ActivateAt(ctx context.Context, r, e uint64) error {
	return s.CanActivateAt(ctx, r, e)
}

// A member whose round times out while its backup does not answer, but
// which answers itself, lost its backup, not its guest: the recovery's
// check finds it before anyone is stopped, nothing is rolled back, and
// the group commits again once the member takes rounds again.
func TestRecoveryCheckFindsLostBackup(t *testing.T) {
	rms := newRecoveryWorld(t, 2, true)
	ms, sbs := groupOf(rms)
	var silent atomic.Bool
	ms, sbs = append(ms, silentMember{&silent}), append(sbs, silentStandby{&silent})
	var (
		mu        sync.Mutex
		rounds    int
		recovered bool
	)
	count := func() int { mu.Lock(); defer mu.Unlock(); return rounds }
	c := &group.Coordinator{Members: ms, Standbys: sbs, Interval: 10 * time.Millisecond, RoundTimeout: 200 * time.Millisecond,
		RecoveryTimeout: 20 * time.Second, OnRecovery: func(group.Recovery) { mu.Lock(); recovered = true; mu.Unlock() },
		OnRound: func(group.RoundStats) { mu.Lock(); rounds++; mu.Unlock() }}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	for count() < 10 {
		time.Sleep(10 * time.Millisecond)
	}
	silent.Store(true)
	time.Sleep(1500 * time.Millisecond)
	during := count()
	silent.Store(false)
	for deadline := time.Now().Add(10 * time.Second); count() < during+10; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("no rounds after the member came back")
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	for _, rm := range rms {
		select {
		case <-rm.m.Aborted():
			t.Errorf("%s was stopped for a lost backup", rm.m.Name())
		default:
		}
	}
	if recovered {
		t.Fatal("the group rolled back for a lost backup")
	}
	t.Logf("%d rounds before the silence (one of them maybe in it), %d after", during, rounds-during)
}

// Under stop-the-world rounds, a member without a backup fails every HALT;
// the others, halted for a round the coordinator gave up on, must not stay
// paused: the next HALT lets their guest go on.
func TestStopTheWorldWithoutBackup(t *testing.T) {
	rms := newRecoveryWorld(t, 3, true)
	ms := make([]group.Member, len(rms))
	sbs := make([]group.Standby, len(rms))
	for i, rm := range rms {
		ms[i], sbs[i] = rm.m, liveStandby{rm}
	}
	var (
		mu     sync.Mutex
		rounds int
	)
	count := func() int { mu.Lock(); defer mu.Unlock(); return rounds }
	c := &group.Coordinator{Members: ms, Standbys: sbs, Interval: 10 * time.Millisecond, RoundTimeout: 2 * time.Second,
		StopTheWorld: true, OnRound: func(group.RoundStats) { mu.Lock(); rounds++; mu.Unlock() }}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	for count() < 10 {
		time.Sleep(10 * time.Millisecond)
	}
	rms[1].stopBackup()
	time.Sleep(time.Second)
	paused, samples := 0, 0
	for range 100 {
		if rms[0].dom.Paused() {
			paused++
		}
		samples++
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	t.Logf("vm1 without a backup: vm0's guest paused in %d of %d samples", paused, samples)
	if paused > samples*3/4 {
		t.Fatalf("vm0's guest stayed paused (%d of %d samples) while vm1 had no backup", paused, samples)
	}
}

// Two failures at once, a member's backup and another member's primary:
// no round can be resumed by every member, so the recovery is refused
// before it stops anyone (the live members run on, their output held).
func TestRecoveryRefusedWithoutABackup(t *testing.T) {
	rms := newRecoveryWorld(t, 3, true)
	ms := make([]group.Member, len(rms))
	sbs := make([]group.Standby, len(rms))
	for i, rm := range rms {
		ms[i], sbs[i] = rm.m, liveStandby{rm}
	}
	rounds := 0
	var recovered bool
	c := &group.Coordinator{Members: ms, Standbys: sbs, Interval: 10 * time.Millisecond, RoundTimeout: 200 * time.Millisecond,
		RecoveryTimeout: 20 * time.Second, OnRecovery: func(group.Recovery) { recovered = true },
		OnRound: func(group.RoundStats) {
			if rounds++; rounds == 10 {
				rms[1].stopBackup() // vm1's backup and vm2's host die together
				rms[2].cancel()
			}
		}}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err := c.Run(ctx)
	if !errors.Is(err, group.ErrRecovery) || recovered {
		t.Fatalf("Run: %v (recovered %v), want the recovery refused", err, recovered)
	}
	select {
	case <-rms[0].m.Aborted():
		t.Fatal("vm0 was stopped although the recovery was refused")
	default:
	}
	for _, rm := range rms {
		rm.mu.Lock()
		if rm.fenced {
			t.Errorf("%s fenced", rm.m.Name())
		}
		rm.mu.Unlock()
	}
	t.Logf("refused: %v", err)
}

// groupOf is the world's members and their backups as a group.
func groupOf(rms []*rbMember) ([]group.Member, []group.Standby) {
	ms := make([]group.Member, len(rms))
	sbs := make([]group.Standby, len(rms))
	for i, rm := range rms {
		ms[i] = rm.m
		sbs[i] = group.LocalStandby{Member: rm.m.Name(), B: rm.b}
	}
	return ms, sbs
}

// ownFailover is the negative control's standby: no group order, each
// backup fails over on its own when its primary goes silent (what
// independent per-VM protection does).
type ownFailover struct {
	name string
	b    *checkpointer.Backup
}

func (o ownFailover) Name() string                                        { return o.name }
func (o ownFailover) CanActivateAt(context.Context, uint64, uint64) error { return nil }
func (o ownFailover) ActivateAt(ctx context.Context, _, _ uint64) error {
	select {
	case <-o.b.Activated():
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// recordStaged notes what a group backup held when the order came.
type recordStaged struct {
	group.LocalStandby
	mu      *sync.Mutex
	dropped *int // backups that held a round newer than the one resumed
	undone  *int // backups that had applied a round newer than it
}

func (r recordStaged) ActivateAt(ctx context.Context, round, epoch uint64) error {
	st := r.B.Status()
	r.mu.Lock()
	if st.Staged > epoch {
		*r.dropped++
	}
	if st.Epoch > epoch && st.Undo == epoch {
		*r.undone++
	}
	r.mu.Unlock()
	return r.LocalStandby.ActivateAt(ctx, round, epoch)
}

// A member's host dies after round `kill`: the round after it fails, and
// every member, the live ones included, must resume on its backup from the
// same committed round, with exactly the memory its guest had at that
// round's checkpoint. Without the group's rollback (each backup failing
// over on its own, from the newest checkpoint it applied) the members
// resume from different rounds, and the checker must say so.
func TestGroupRecovery(t *testing.T) {
	const kill = 8
	for _, unsafe := range []bool{false, true} {
		t.Run(fmt.Sprintf("unsafe=%v", unsafe), func(t *testing.T) {
			rms := newRecoveryWorld(t, 3, !unsafe)
			ms := make([]group.Member, len(rms))
			sbs := make([]group.Standby, len(rms))
			var mu sync.Mutex
			dropped, undone := 0, 0
			for i, rm := range rms {
				ms[i] = rm.m
				sbs[i] = recordStaged{group.LocalStandby{Member: rm.m.Name(), B: rm.b}, &mu, &dropped, &undone}
				if unsafe {
					sbs[i] = ownFailover{rm.m.Name(), rm.b}
				}
			}
			var rec *group.Recovery
			c := &group.Coordinator{Members: ms, Standbys: sbs, Interval: 10 * time.Millisecond, RoundTimeout: 500 * time.Millisecond,
				RecoveryTimeout: 20 * time.Second,
				OnRound: func(st group.RoundStats) {
					if st.Round == kill {
						rms[1].cancel() // vm1's host dies: its primary takes no more rounds
					}
				},
				OnRecovery: func(r group.Recovery) { rec = &r }}
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			if err := c.Run(ctx); err != nil {
				t.Fatalf("Run: %v", err)
			}
			// Round kill is held by every backup, but its channel state
			// (frames logged in round kill+1) is not: the group resumes
			// from round kill-1.
			if rec == nil || rec.Failed != kill+1 || rec.Round != kill-1 {
				t.Fatalf("recovery %+v, want round %d failed and round %d resumed", rec, kill+1, kill-1)
			}
			var bad []string
			for _, rm := range rms {
				rm.mu.Lock()
				e := rec.Epochs[rm.m.Name()]
				want, ok := rm.atEpoch[e]
				st := rm.b.Status()
				if !ok || rm.resumed != want || !rm.fenced || st.State != checkpointer.StateActive {
					round, _ := rm.m.Output().RoundOf(st.Epoch)
					bad = append(bad, fmt.Sprintf("%s resumed from epoch %d (round %d, state %s, fenced %v), not from round %d's epoch %d",
						rm.m.Name(), st.Epoch, round, st.State, rm.fenced, rec.Round, e))
				}
				rm.mu.Unlock()
			}
			t.Logf("recovery: round %d failed, all resumed from round %d in %v; %d inconsistent", rec.Failed, rec.Round, rec.Took.Round(time.Millisecond), len(bad))
			if unsafe && len(bad) == 0 {
				t.Fatal("independent failovers resumed a consistent cut: the checker cannot tell")
			}
			if !unsafe && len(bad) > 0 {
				t.Fatalf("group recovery resumed an inconsistent cut: %q", bad)
			}
			// Every backup dropped a staged round (kill+1 on the live
			// members', kill on vm1's); the live members' backups had
			// applied round kill and undid it.
			if !unsafe && (dropped != len(rms) || undone != len(rms)-1) {
				t.Fatalf("%d backups dropped a staged round and %d undid an applied one, want %d and %d", dropped, undone, len(rms), len(rms)-1)
			}
		})
	}
}

// failCommit is a member whose host dies while round `at` is committed:
// every backup holds the round, but its COMMIT fails.
type failCommit struct {
	*group.LocalMember
	at   uint64
	kill func()
}

func (f failCommit) Commit(r uint64) error {
	if r == f.at {
		f.kill()
		return errors.New("EOF")
	}
	return f.LocalMember.Commit(r)
}

// A round that fails while its predecessor is being committed is held by
// every backup: the group resumes from that predecessor (with its epochs),
// not from the round before it.
func TestRecoveryFromARoundFailedInCommit(t *testing.T) {
	const at = 6
	rms := newRecoveryWorld(t, 3, true)
	ms, sbs := groupOf(rms)
	ms[0] = failCommit{rms[0].m, at, rms[0].cancel}
	var rec *group.Recovery
	c := &group.Coordinator{Members: ms, Standbys: sbs, Interval: 10 * time.Millisecond, RoundTimeout: 500 * time.Millisecond,
		RecoveryTimeout: 20 * time.Second, OnRecovery: func(r group.Recovery) { rec = &r }}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := c.Run(ctx); err != nil {
		t.Fatalf("Run: %v", err)
	}
	if rec == nil || rec.Failed != at+1 || rec.Round != at {
		t.Fatalf("recovery %+v, want round %d failed and round %d resumed", rec, at+1, at)
	}
	for _, rm := range rms {
		rm.mu.Lock()
		want, ok := rm.atEpoch[rec.Epochs[rm.m.Name()]]
		if e, _ := rm.m.Output().RoundEpoch(at); !ok || rm.resumed != want || e != rec.Epochs[rm.m.Name()] {
			t.Errorf("%s did not resume from round %d's checkpoint (epoch %d)", rm.m.Name(), at, rec.Epochs[rm.m.Name()])
		}
		rm.mu.Unlock()
	}
}

// A recovery order for a checkpoint the backup does not hold is refused
// and nothing goes live; a plain (non-group) backup refuses every order.
func TestActivateAtRefuses(t *testing.T) {
	for _, grp := range []bool{true, false} {
		rm := newRecoveryWorld(t, 1, grp)[0]
		err := rm.b.ActivateAt(context.Background(), 1, 1<<40)
		if !errors.Is(err, checkpointer.ErrGroupRecovery) {
			t.Fatalf("group=%v: ActivateAt(unknown epoch) = %v, want ErrGroupRecovery", grp, err)
		}
		if st := rm.b.Status(); st.State == checkpointer.StateActive || rm.fenced {
			t.Fatalf("group=%v: refused order left state %s, fenced %v", grp, st.State, rm.fenced)
		}
		t.Logf("group=%v: %v", grp, err)
	}
}

// fakeColours records the colour calls and checks when they come.
type fakeColours struct {
	rm      *rbMember
	mu      sync.Mutex
	round   uint32
	errs    []string
	sets    int
	release []uint32
}

func (f *fakeColours) SetRound(r uint32) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if r > 1 && !f.rm.dom.Paused() {
		f.errs = append(f.errs, fmt.Sprintf("round %d set while the guest runs", r))
	}
	if r != f.round+1 {
		f.errs = append(f.errs, fmt.Sprintf("round %d set after %d", r, f.round))
	}
	f.round = r
	f.sets++
	return nil
}

func (f *fakeColours) Leave() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.errs = append(f.errs, "left the group's colours")
	return nil
}

func (f *fakeColours) ReleaseHeld(r uint32) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if r > f.round {
		f.errs = append(f.errs, fmt.Sprintf("held frames of round %d released at round %d", r, f.round))
	}
	f.release = append(f.release, r)
	return 0, nil
}

// A coloured member advances its colour while paused for each round's
// checkpoint, and releases held frames of round r+1 only once its
// checkpoint of round r is acknowledged.
func TestColoursFollowRounds(t *testing.T) {
	rms := newRecoveryWorld(t, 2, true)
	var fcs []*fakeColours
	ms := make([]group.Member, len(rms))
	for i, rm := range rms {
		fc := &fakeColours{rm: rm}
		if err := rm.m.SetColours(fc); err != nil {
			t.Fatal(err)
		}
		fcs = append(fcs, fc)
		ms[i] = rm.m
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	c := &group.Coordinator{Members: ms, Interval: 5 * time.Millisecond, RoundTimeout: 5 * time.Second,
		OnRound: func(st group.RoundStats) {
			if st.Round == 10 {
				cancel()
			}
		}}
	if err := c.Run(ctx); err != nil {
		t.Fatal(err)
	}
	for i, fc := range fcs {
		fc.mu.Lock()
		if len(fc.errs) > 0 || fc.round < 11 || len(fc.release) < 10 || fc.release[9] != 11 {
			t.Errorf("member %d: round %d, releases %v, errors %q", i, fc.round, fc.release, fc.errs)
		}
		fc.mu.Unlock()
	}
}

// A coordinator restarted against running members goes on above their
// last round and knows the group's last committed round from them: a
// member lost in the new coordinator's first round (before it committed
// any round of its own) still rolls the whole group back, to the round
// the first coordinator committed, with exactly that round's memory.
func TestCoordinatorRestart(t *testing.T) {
	const stopAt = 8
	rms := newRecoveryWorld(t, 3, true)
	ms, sbs := groupOf(rms)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	actx, stopA := context.WithCancel(ctx)
	a := &group.Coordinator{Members: ms, Standbys: sbs, Interval: 10 * time.Millisecond, RoundTimeout: 500 * time.Millisecond,
		OnRound: func(st group.RoundStats) {
			if st.Round == stopAt {
				stopA() // the coordinator's process dies
			}
		}}
	if err := a.Run(actx); err != nil {
		t.Fatalf("first coordinator: %v", err)
	}
	rms[1].cancel() // then vm1's host dies too
	var rec *group.Recovery
	b := &group.Coordinator{Members: ms, Standbys: sbs, Interval: 10 * time.Millisecond, RoundTimeout: 500 * time.Millisecond,
		RecoveryTimeout: 20 * time.Second, OnRecovery: func(r group.Recovery) { rec = &r }}
	if err := b.Run(ctx); err != nil {
		t.Fatalf("restarted coordinator: %v", err)
	}
	// Round stopAt was held by every backup; its channel state was not:
	// the group resumes from stopAt-1, which the first coordinator
	// committed (or stopAt, if the first coordinator's last tick still
	// ran round stopAt+1 on every member before it died). The restarted
	// coordinator's first round is above every round the members took.
	if rec == nil || rec.Failed <= stopAt || rec.Round < stopAt-1 || rec.Round+2 > rec.Failed {
		t.Fatalf("recovery %+v, want a round after %d failed and round %d (or %d) resumed", rec, stopAt, stopAt-1, stopAt)
	}
	for _, rm := range rms {
		rm.mu.Lock()
		want, ok := rm.atEpoch[rec.Epochs[rm.m.Name()]]
		if e, _ := rm.m.Output().RoundEpoch(rec.Round); !ok || rm.resumed != want || e != rec.Epochs[rm.m.Name()] {
			t.Errorf("%s did not resume from round %d's checkpoint (epoch %d)", rm.m.Name(), rec.Round, rec.Epochs[rm.m.Name()])
		}
		rm.mu.Unlock()
	}
}

// A restarted coordinator's rounds follow the members' last one and its
// commits keep the global commit (the checker sees every release).
func TestCoordinatorRestartGoesOn(t *testing.T) {
	w := newWorld(t, 3, 0)
	var rounds int
	var firstB, want uint64
	for run := range 2 {
		if run == 1 {
			for _, m := range w.members {
				st, _ := m.State(context.Background(), 1)
				want = max(want, st.Last+1)
			}
		}
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		c := w.coordinator(false, &rounds)
		n := 0
		c.OnRound = func(st group.RoundStats) {
			if n++; n == 1 && run == 1 {
				firstB = st.Round
			}
			if n == 10 {
				cancel()
			}
		}
		if err := c.Run(ctx); err != nil {
			t.Fatalf("run %d: %v", run, err)
		}
		cancel()
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	// The first coordinator's last tick may have started round 11 on some
	// members before it died.
	if firstB != want || want < 11 || len(w.errs) > 0 || w.commits == 0 {
		t.Fatalf("restarted coordinator began at round %d (want %d, above 10); %d releases; violations %q", firstB, want, w.commits, w.errs)
	}
}
