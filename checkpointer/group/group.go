// SPDX-License-Identifier: Apache-2.0

// Package group is VDEchp: several protected VMs, each with its own
// primary and backup, checkpointed in rounds by one coordinator, and
// rolled back together to one globally consistent round.
//
//	coordinator: tick -> ROUND r to every member (in parallel)
//	member:      pause, capture, resume (its epoch e_r) -> ship -> its backup's ACK -> DONE r
//	coordinator: every DONE r (within RoundTimeout): round r is held -> COMMIT r-1 to every member
//	member:      release its held external output of epochs <= e_(r-1)
//
// Round r-1, not r, is committed: the group can only resume from a round
// whose channel state is at the backups too. A frame sent in round r-1
// that reached its receiver after the receiver's checkpoint of r-1 is in
// transit across that cut; the receiver logs it in round r, and its log
// is at the receiver's backup once the receiver's checkpoint of r is.
//
// A member that misses the timeout (hung, or gone mid-round) fails the
// round. With Standbys the coordinator then recovers the group: every
// live member is aborted and every member resumes on its backup from the
// last committed round.
package group

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// ErrMemberFailed is a member that did not complete a round in time.
var ErrMemberFailed = errors.New("group member failed")

// ErrNoBackup is a member whose primary runs but has no backup (lost, or
// being filled again): it cannot take a round, and nothing of it is lost,
// so the group does not roll back for it.
var ErrNoBackup = errors.New("no backup")

// ErrRecovery is a group recovery that did not bring every member back.
var ErrRecovery = errors.New("group recovery failed")

// ErrSuperseded is an agent's refusal of a coordinator whose term is lower
// than one it has followed: another coordinator took over.
var ErrSuperseded = errors.New("superseded")

// Done is a member's answer to a round: when it paused for the round and
// the epoch of its checkpoint (its backup acknowledged it).
type Done struct {
	Paused time.Time
	Epoch  uint64
}

// Member is one VM of the group as the coordinator drives it.
type Member interface {
	Name() string
	// Round checkpoints round r and returns once the member's backup holds
	// it.
	Round(ctx context.Context, r uint64) (Done, error)
	// Commit releases the member's external output of rounds <= r.
	Commit(r uint64) error
	// Abort stops the member's guest for good: the group rolls back to a
	// round before r (a member whose primary is gone fails it).
	Abort(ctx context.Context, r uint64) error
	// State says where the member is, for a coordinator that starts
	// against running members: see State.
	State(ctx context.Context, r uint64) (State, error)
}

// Halter is a member that takes stop-the-world rounds
// (Coordinator.StopTheWorld).
type Halter interface {
	// Halt pauses the member's guest and captures round r; the guest
	// stays paused until Round(r).
	Halt(ctx context.Context, r uint64) error
}

// State is a member's answer to a starting coordinator.
type State struct {
	// Last is the last round the member was asked for (0: none); Acked
	// the last round its backup acknowledged.
	Last, Acked uint64
	// Epoch is its epoch of the round asked about, if its backup
	// acknowledged it (0: not).
	Epoch uint64
}

// Standby is a member's backup as the group's recovery drives it.
type Standby interface {
	// Name is its member's name.
	Name() string
	// CanActivateAt says whether ActivateAt(r, epoch) would be followed;
	// it changes nothing.
	CanActivateAt(ctx context.Context, r, epoch uint64) error
	// ActivateAt resumes the member's guest on the backup host from epoch,
	// its checkpoint of the group's committed round r.
	ActivateAt(ctx context.Context, r, epoch uint64) error
}

// Recovery is what one group recovery did.
type Recovery struct {
	// Failed is the round that failed; Round the round every member
	// resumed from: the last committed one (Failed - 2, or Failed - 1 when
	// it failed while committing Failed - 1).
	Failed, Round uint64
	// Epochs is each member's epoch of Round.
	Epochs map[string]uint64
	// Took is the failure's detection to the last member running again.
	Took time.Duration
}

// RoundStats is what one globally committed round measured.
type RoundStats struct {
	Round uint64
	// Commit is the round's start to its global commit (every backup
	// holds it); Skew the spread of the members' pause moments.
	Commit, Skew time.Duration
}

// Coordinator runs the rounds (VDEchp's initiator; on a backup host).
type Coordinator struct {
	Members []Member
	// Interval between rounds; RoundTimeout bounds one round (default
	// 10 x Interval).
	Interval, RoundTimeout time.Duration
	// UnsafePerMemberCommit commits each member on its own DONE, not on
	// the group's (tests only: the negative control of the global commit).
	UnsafePerMemberCommit bool
	// UnsafeEarlyCommit commits round r as soon as every backup holds it
	// and resumes from the last round held: one round less of external
	// latency, but a frame in transit across that round's cut is lost if
	// its receiver's host dies before the receiver's input log of it
	// reaches its backup (only measurements use it).
	UnsafeEarlyCommit bool
	// StopTheWorld runs every round as a VNsnap-style group snapshot, the
	// baseline VDEchp is measured against: each member's guest captures
	// the round and stays paused until every member's did (HALT), then
	// all resume (ROUND). Every member must be a Halter.
	StopTheWorld bool
	// Stagger delays member k's round by k x Stagger: tests widen the
	// members' pause skew with it, so that frames between rounds are
	// common (the colour hold must still keep the cut consistent).
	Stagger time.Duration
	// Standbys, one per member (matched by name), recover the group when
	// a round fails: every live member is aborted and every member resumes
	// on its backup from the last committed round. Without them a failed
	// round only stops the coordinator.
	Standbys []Standby
	// RecoveryTimeout bounds the recovery (default 5 min: fencing and
	// restoring guests).
	RecoveryTimeout time.Duration
	// StartTimeout bounds the coordinator's first round (default and at
	// least RoundTimeout): a member protected again after a recovery
	// takes it only once its new backup is synchronised.
	StartTimeout time.Duration
	// AbortTimeout bounds the wait for the live members to stop before
	// the backups resume (default: RoundTimeout, at most 1 s). One that
	// does not answer in time (its host just died) is fenced by its
	// backup before its guest resumes there.
	AbortTimeout time.Duration
	// Term orders coordinators: the agents follow the highest they have
	// seen and refuse a lower one (ErrSuperseded), so that a coordinator
	// another took over from cannot lead the group again. 0: the start
	// time in Unix nanoseconds, which a later start (a restart, a
	// takeover) exceeds as long as the hosts' clocks agree to within the
	// time between the two starts.
	Term       uint64
	OnRound    func(RoundStats)
	OnRecovery func(Recovery)
	Logger     *slog.Logger
	// Metrics, if set, receives the coordinator's series (Status has the
	// same for /status).
	Metrics *Metrics

	// held is the last round every member's backup holds; epochs holds
	// each member's epoch (by name) of it and of the round before.
	held   uint64
	epochs map[uint64]map[string]uint64
	// first is the first round this coordinator ran; from the first
	// round of its current unbroken run of rounds every member took (a
	// member without a backup breaks it); restored the committed round a
	// restarted coordinator learnt from the members (0: none), until its
	// own rounds commit one.
	first, from, restored uint64
	// backupless are the members last seen without a backup.
	backupless map[string]bool
	box        statusBox
}

// committed is the round the group resumes from: the one before the last
// held (its channel state is held too), or the last held one with
// UnsafeEarlyCommit. 0: none yet. A round before the current run of
// rounds is not a cut it can resume (a restart: the old coordinator may
// have stopped halfway through it; a member's backup lost: it holds no
// round of that member): the members' restored one stands for it.
func (c *Coordinator) committed() uint64 {
	cr := c.held
	if !c.UnsafeEarlyCommit && cr > 0 {
		cr--
	}
	if cr >= c.from && cr > 0 {
		return cr
	}
	return c.restored
}

// start asks every member where it is, so that a coordinator started
// against running members (a restart) goes on above the last round any
// of them was asked for (their colours never go back) and knows the
// group's last committed round. Its backups can reach the round before
// the last one they acknowledged (their undo) and that one: if every
// member acknowledged the same last round A, the group resumes from A-1
// (its in-transit frames are logged); if the old coordinator died
// halfway through round A+1, from A, the only round every backup can
// still reach (its in-transit frames logged only by the members that
// took A+1: the early commit's window, once).
func (c *Coordinator) start(ctx context.Context, log *slog.Logger) (uint64, error) {
	sctx, cancel := context.WithTimeout(ctx, c.RoundTimeout)
	defer cancel()
	// Claim the backups too (they follow this term from now on and refuse
	// an older coordinator's recovery orders); one not answering yet is
	// not a reason to stop.
	for _, s := range c.Standbys {
		if h, ok := s.(interface{ hello(context.Context) error }); ok {
			if err := h.hello(sctx); errors.Is(err, ErrSuperseded) {
				return 0, err
			} else if err != nil {
				log.Warn("group: a member's backup does not answer", "member", s.Name(), "err", err)
			}
		}
	}
	states, err := c.states(sctx, 1)
	if err != nil {
		return 0, err
	}
	inFlight := false
	for _, st := range states {
		inFlight = inFlight || st.Last > st.Acked
	}
	if inFlight { // a round may still be acknowledged: look again
		time.Sleep(min(c.Interval, 100*time.Millisecond))
		if states, err = c.states(sctx, 1); err != nil {
			return 0, err
		}
	}
	var last, hi uint64
	lo := ^uint64(0)
	for _, st := range states {
		last, lo, hi = max(last, st.Last), min(lo, st.Acked), max(hi, st.Acked)
	}
	c.first = last + 1
	c.from = c.first
	if last == 0 {
		return 1, nil
	}
	cr := lo // 0: a member holds no acknowledged round (it ran unprotected)
	if hi == lo && cr > 0 && !c.UnsafeEarlyCommit {
		cr--
	}
	log.Warn("group coordinator started against running members: going on from their rounds", "last", last, "acknowledged", fmt.Sprintf("%d..%d", lo, hi), "committed", cr)
	if hi != lo && !c.UnsafeEarlyCommit {
		log.Warn("the old coordinator stopped halfway through a round: until this one commits a round, the group would resume from the last round every backup held, whose frames in transit may not all be logged", "round", cr)
	}
	if cr == 0 {
		return c.first, nil
	}
	at, err := c.states(sctx, cr)
	if err != nil {
		return 0, err
	}
	epochs := map[string]uint64{}
	for name, st := range at {
		if st.Epoch == 0 {
			log.Warn("group: a member no longer knows its epoch of the last committed round: no recovery before two new rounds", "member", name, "round", cr)
			return c.first, nil
		}
		epochs[name] = st.Epoch
	}
	c.restored = cr
	c.epochs = map[uint64]map[string]uint64{cr: epochs}
	return c.first, nil
}

// states asks every member for its State of round r.
func (c *Coordinator) states(ctx context.Context, r uint64) (map[string]State, error) {
	return statesOf(ctx, c.Members, r)
}

// statesOf asks every member of ms for its State of round r.
func statesOf(ctx context.Context, ms []Member, r uint64) (map[string]State, error) {
	var mu sync.Mutex
	out := make(map[string]State, len(ms))
	var errs []error
	var wg sync.WaitGroup
	for _, m := range ms {
		wg.Go(func() {
			st, err := m.State(ctx, r)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs = append(errs, fmt.Errorf("%w: %s did not say where it is: %w", ErrMemberFailed, m.Name(), err))
				return
			}
			out[m.Name()] = st
		})
	}
	wg.Wait()
	return out, errors.Join(errs...)
}

// Standby is AwaitTakeover(ctx, observers, poll, quiet, c.Logger) with
// c's status saying so; Run it next.
func (c *Coordinator) Standby(ctx context.Context, observers []Member, poll, quiet time.Duration) error {
	c.box.m = c.Metrics
	c.noteState(StateStandby)
	return AwaitTakeover(ctx, observers, poll, quiet, c.Logger)
}

// AwaitTakeover is a standby coordinator's wait. Every poll it asks each
// member where it is (STATE, on observer links: members given without a
// term, which lead nothing), and it returns once every member answered
// and none has been asked for a new round for quiet: the coordinator that
// led the group is gone (or there never was one). The caller then runs
// its own Coordinator, whose higher term makes the agents refuse the old
// one should it come back. While any member does not answer it only
// waits: a member whose host died is the leading coordinator's to
// recover, and a member it stopped for a recovery refuses STATE. quiet
// must exceed the leading coordinator's longest pause between two rounds
// (its round timeout and recovery check), or both would lead for a while.
func AwaitTakeover(ctx context.Context, ms []Member, poll, quiet time.Duration, log *slog.Logger) error {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	t := time.NewTicker(poll)
	defer t.Stop()
	var last uint64
	since, silent := time.Now(), false
	for {
		qctx, cancel := context.WithTimeout(ctx, poll)
		states, err := statesOf(qctx, ms, 1)
		cancel()
		switch {
		case ctx.Err() != nil:
			return ctx.Err()
		case err != nil:
			if !silent {
				log.Warn("standby coordinator: a member does not answer; waiting (not taking over)", "err", err)
			}
			since, silent = time.Now(), true
		default:
			silent = false
			hi := uint64(0)
			for _, st := range states {
				hi = max(hi, st.Last)
			}
			if hi != last {
				last, since = hi, time.Now()
			} else if quietFor := time.Since(since); quietFor >= quiet {
				log.Warn("standby coordinator: no round asked for: taking the group over", "last_round", last, "quiet", quietFor.Round(time.Millisecond))
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
}

// Run drives rounds 1, 2, ... until ctx ends (nil) or a member fails a
// round (ErrMemberFailed; that round is committed by nobody). With
// Standbys the group then recovers: Run returns nil once every member runs
// again from the last committed round (OnRecovery says how), or the
// failure joined with ErrRecovery.
func (c *Coordinator) Run(ctx context.Context) error {
	if len(c.Members) == 0 || c.Interval <= 0 {
		return errors.New("group: members and a positive interval are required")
	}
	if c.RoundTimeout <= 0 {
		c.RoundTimeout = 10 * c.Interval
	}
	if c.RecoveryTimeout <= 0 {
		c.RecoveryTimeout = 5 * time.Minute
	}
	c.StartTimeout = max(c.StartTimeout, c.RoundTimeout)
	if c.AbortTimeout <= 0 {
		c.AbortTimeout = min(c.RoundTimeout, time.Second)
	}
	if err := c.checkStandbys(); err != nil {
		return err
	}
	if c.StopTheWorld {
		for _, m := range c.Members {
			if _, ok := m.(Halter); !ok {
				return fmt.Errorf("group: member %s cannot take stop-the-world rounds", m.Name())
			}
		}
	}
	log := c.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if c.Term == 0 {
		c.Term = uint64(time.Now().UnixNano())
	}
	for _, a := range c.agents() {
		if t, ok := a.(interface{ setTerm(uint64) }); ok {
			t.setTerm(c.Term)
		}
	}
	c.box.m = c.Metrics
	c.box.update(func(s *Status) { s.Term = c.Term })
	c.noteState(StateStarting)
	err := c.run(ctx, log)
	switch {
	case errors.Is(err, ErrSuperseded):
		c.noteState(StateSuperseded)
		log.Error("group coordinator superseded: another coordinator leads the group; this one stops and orders nothing more", "term", c.Term, "err", err)
	case err != nil:
		c.noteState(StateFailed)
	}
	return err
}

// agents are the members' and backups' links, for their term.
func (c *Coordinator) agents() []any {
	out := make([]any, 0, len(c.Members)+len(c.Standbys))
	for _, m := range c.Members {
		out = append(out, m)
	}
	for _, s := range c.Standbys {
		out = append(out, s)
	}
	return out
}

// superseded reports whether any of errs is an agent's ErrSuperseded.
func superseded[E error](errs map[string]E) bool {
	for _, err := range errs {
		if errors.Is(err, ErrSuperseded) {
			return true
		}
	}
	return false
}

// run is Run's rounds.
func (c *Coordinator) run(ctx context.Context, log *slog.Logger) error {
	first, err := c.start(ctx, log)
	if err != nil {
		return err
	}
	t := time.NewTicker(c.Interval)
	defer t.Stop()
	for r := first; ; r++ {
		if r > first {
			select {
			case <-ctx.Done():
				return nil
			case <-t.C:
			}
		}
		st, failed, err := c.round(ctx, r)
		if ctx.Err() != nil {
			return nil
		}
		if superseded(failed) {
			return err // no recovery: the group is another coordinator's
		}
		if err != nil && c.backupsLost(failed) {
			c.withoutBackup(r, failed, log)
			continue
		}
		if err != nil {
			log.Error("group round failed: the group must resume from its last committed round", "round", r, "committed", c.committed(), "err", err)
			if len(c.Standbys) == 0 {
				return err
			}
			lost, rerr := c.recover(ctx, r, failed, log)
			if rerr != nil {
				return errors.Join(err, rerr)
			}
			if len(lost) > 0 {
				c.withoutBackup(r, lost, log)
				continue
			}
			return nil
		}
		if len(c.backupless) > 0 {
			log.Warn("group: every member took a round again; commits resume once the group holds two such rounds", "round", r)
			clear(c.backupless)
		}
		c.noteRound(st)
		if c.OnRound != nil {
			c.OnRound(st)
		}
	}
}

// backupsLost reports whether every member that failed a round failed it
// for want of a backup (its primary runs), saying so or, known to have
// lost it already, timing out (its primary has not noticed yet).
func (c *Coordinator) backupsLost(failed map[string]error) bool {
	for name, err := range failed {
		if !errors.Is(err, ErrNoBackup) && !c.backupless[name] {
			return false
		}
	}
	return len(failed) > 0
}

// withoutBackup goes on after round r failed only because members' backups
// are lost (their primaries run): nothing to roll back. The group has no
// round to resume from until every member took two rounds again (a lost
// backup holds none of its member's), so nothing commits meanwhile: the
// members hold their external output, or release it unprotected (their
// --on-backup-loss continue), and the coordinator keeps asking.
func (c *Coordinator) withoutBackup(r uint64, lost map[string]error, log *slog.Logger) {
	if c.backupless == nil {
		c.backupless = map[string]bool{}
	}
	for name, err := range lost {
		if !c.backupless[name] {
			log.Warn("group: a member has no backup (its primary runs): no rollback; nothing commits until it is protected again",
				"member", name, "round", r, "err", err)
			c.backupless[name] = true
		}
	}
	c.from, c.restored, c.epochs = r+1, 0, nil
	c.noteState(StateWithoutBackup)
}

// round runs round r on every member at once and commits it if all did.
// It returns the members that failed the round, and why.
func (c *Coordinator) round(ctx context.Context, r uint64) (RoundStats, map[string]error, error) {
	start := time.Now()
	c.box.update(func(s *Status) { s.Round = r })
	timeout := c.RoundTimeout
	if r == c.first {
		timeout = c.StartTimeout
	}
	rctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	stagger := c.Stagger
	if c.StopTheWorld {
		// Every guest pauses and captures the round; none resumes before
		// all did.
		halted, failed, err := c.each(rctx, r, stagger, func(m Member) (Done, error) {
			return Done{}, m.(Halter).Halt(rctx, r)
		})
		if err != nil {
			// The guests that halted go on: their epoch of round r ships
			// as any other, and the round commits nowhere.
			var wg sync.WaitGroup
			for _, m := range c.Members {
				if _, ok := halted[m.Name()]; ok {
					wg.Go(func() { _, _ = m.Round(rctx, r) })
				}
			}
			wg.Wait()
			return RoundStats{}, failed, err
		}
		stagger = 0
	}
	done, failed, err := c.each(rctx, r, stagger, func(m Member) (Done, error) {
		d, err := m.Round(rctx, r)
		if err == nil && c.UnsafePerMemberCommit {
			err = m.Commit(r)
		}
		return d, err
	})
	if err != nil {
		return RoundStats{}, failed, err
	}
	pauses := make([]time.Time, 0, len(done))
	epochs := make(map[string]uint64, len(c.Members))
	for name, d := range done {
		pauses = append(pauses, d.Paused)
		epochs[name] = d.Epoch
	}
	// Every member's backup holds round r: round r-1 is the group's to
	// resume from, whether or not every COMMIT below arrives.
	if c.epochs == nil {
		c.epochs = map[uint64]map[string]uint64{}
	}
	c.held, c.epochs[r] = r, epochs
	if r-2 != c.restored {
		delete(c.epochs, r-2)
	}
	st := RoundStats{Round: r, Commit: time.Since(start)}
	if cr := c.committed(); cr != 0 && !c.UnsafePerMemberCommit {
		for _, m := range c.Members {
			if err := m.Commit(cr); err != nil {
				err = fmt.Errorf("commit round %d on %s: %w", cr, m.Name(), err)
				return st, map[string]error{m.Name(): err}, err
			}
		}
	}
	slices.SortFunc(pauses, func(a, b time.Time) int { return a.Compare(b) })
	st.Skew = pauses[len(pauses)-1].Sub(pauses[0])
	return st, nil, nil
}

// each runs f for every member at once (member k after k x stagger) and
// returns their answers by name, or the members that failed and why.
func (c *Coordinator) each(ctx context.Context, r uint64, stagger time.Duration, f func(Member) (Done, error)) (map[string]Done, map[string]error, error) {
	var (
		mu     sync.Mutex
		wg     sync.WaitGroup
		errs   []error
		done   = make(map[string]Done, len(c.Members))
		failed = map[string]error{}
	)
	for k, m := range c.Members {
		wg.Go(func() {
			if stagger > 0 {
				select {
				case <-time.After(time.Duration(k) * stagger):
				case <-ctx.Done():
				}
			}
			d, err := f(m)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				err = fmt.Errorf("%w: %s in round %d: %w", ErrMemberFailed, m.Name(), r, err)
				errs = append(errs, err)
				failed[m.Name()] = err
				return
			}
			done[m.Name()] = d
		})
	}
	wg.Wait()
	return done, failed, errors.Join(errs...)
}

// checkStandbys requires one standby per member, or none.
func (c *Coordinator) checkStandbys() error {
	if len(c.Standbys) == 0 {
		return nil
	}
	names := map[string]bool{}
	for _, m := range c.Members {
		names[m.Name()] = true
	}
	for _, s := range c.Standbys {
		if !names[s.Name()] {
			return fmt.Errorf("group: standby %q has no member", s.Name())
		}
		delete(names, s.Name())
	}
	if len(names) > 0 {
		return fmt.Errorf("group: %d members without a standby (one per member, or none)", len(names))
	}
	return nil
}

// recover rolls the whole group back after round failed failed: every
// member that completed the round stops its guest, then every member's
// backup resumes it from the last committed round, all at once. The
// members that failed the round (down, or hung) are told to stop too, but
// not waited for: their backups fence them.
//
// Before it stops anyone, it asks every backup whether it can resume its
// member from that round (check). A member whose backup cannot, but
// which still answers itself, lost its backup, not its guest: nothing is
// rolled back, and recover returns those members (lost). If another
// member failed too, or one answers neither itself nor through its
// backup, no round can be resumed by every member: the recovery is
// refused, and nobody is stopped.
func (c *Coordinator) recover(ctx context.Context, failed uint64, down map[string]error, log *slog.Logger) (lost map[string]error, err error) {
	start := time.Now()
	cr := c.committed()
	if cr == 0 {
		return nil, fmt.Errorf("%w: round %d failed before any round was committed: no consistent state to resume", ErrRecovery, failed)
	}
	// A round that failed while its predecessor was being committed is
	// held by every backup: the group resumes from that predecessor.
	rc := Recovery{Failed: failed, Round: cr, Epochs: c.epochs[cr]}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), c.RecoveryTimeout)
	defer cancel()
	if lost, err := c.check(ctx, rc, down); err != nil || len(lost) > 0 {
		if err != nil {
			log.Error("group recovery refused: nobody stopped", "round", rc.Round, "err", err)
		}
		return lost, err
	}
	c.noteState(StateRecovering)
	// The live members must not run on, nor talk to the resumed ones.
	var wg, downWG sync.WaitGroup
	actx, acancel := context.WithTimeout(ctx, c.AbortTimeout)
	defer func() { downWG.Wait(); acancel() }()
	var supersededBy atomic.Pointer[error]
	for _, m := range c.Members {
		g := &wg
		if _, ok := down[m.Name()]; ok {
			g = &downWG
		}
		g.Go(func() {
			if err := m.Abort(actx, failed); errors.Is(err, ErrSuperseded) {
				supersededBy.Store(&err)
			} else if err != nil {
				log.Warn("group recovery: member not stopped (its backup fences it)", "member", m.Name(), "err", err)
			}
		})
	}
	wg.Wait()
	if errp := supersededBy.Load(); errp != nil {
		// Another coordinator leads these members: no backup resumes.
		return nil, fmt.Errorf("%w: %w", ErrRecovery, *errp)
	}
	errs := make([]error, len(c.Standbys))
	for i, s := range c.Standbys {
		wg.Go(func() {
			e := rc.Epochs[s.Name()]
			if err := s.ActivateAt(ctx, rc.Round, e); err != nil {
				errs[i] = fmt.Errorf("%w: %s at round %d (epoch %d): %w", ErrRecovery, s.Name(), rc.Round, e, err)
			}
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		log.Error("group recovery failed", "round", rc.Round, "err", err)
		return nil, err
	}
	rc.Took = time.Since(start)
	c.box.update(func(s *Status) { s.State, s.Recovery = StateRecovered, &rc })
	if m := c.Metrics; m != nil {
		m.Recoveries.Inc()
	}
	log.Warn("group recovered: every member resumed from the last committed round", "round", rc.Round, "took", rc.Took)
	if c.OnRecovery != nil {
		c.OnRecovery(rc)
	}
	return nil, nil
}

// check asks every backup, within AbortTimeout, whether it can resume its
// member from round rc.Round; see recover.
func (c *Coordinator) check(ctx context.Context, rc Recovery, down map[string]error) (map[string]error, error) {
	ctx, cancel := context.WithTimeout(ctx, c.AbortTimeout)
	defer cancel()
	var (
		mu   sync.Mutex
		wg   sync.WaitGroup
		lost = map[string]error{}
		errs []error
	)
	for _, s := range c.Standbys {
		wg.Go(func() {
			err := s.CanActivateAt(ctx, rc.Round, rc.Epochs[s.Name()])
			if err == nil {
				return
			}
			if errors.Is(err, ErrSuperseded) { // another coordinator leads: recover nothing
				mu.Lock()
				errs = append(errs, fmt.Errorf("%w: %s: %w", ErrRecovery, s.Name(), err))
				mu.Unlock()
				return
			}
			// Does its member still run? Then only the backup is lost.
			_, serr := c.member(s.Name()).State(ctx, rc.Round)
			mu.Lock()
			defer mu.Unlock()
			if serr != nil {
				errs = append(errs, fmt.Errorf("%w: %s answers neither itself (%w) nor through its backup (%w)", ErrRecovery, s.Name(), serr, err))
				return
			}
			lost[s.Name()] = fmt.Errorf("%w: its backup cannot resume it from round %d: %w", ErrNoBackup, rc.Round, err)
		})
	}
	wg.Wait()
	if len(lost) > 0 {
		for name, err := range down {
			if _, ok := lost[name]; !ok && !errors.Is(err, ErrNoBackup) {
				errs = append(errs, fmt.Errorf("%w: %s failed the round while %d other members have no backup: no round every member can resume from", ErrRecovery, name, len(lost)))
			}
		}
	}
	return lost, errors.Join(errs...)
}

// member is the member named name.
func (c *Coordinator) member(name string) Member {
	for _, m := range c.Members {
		if m.Name() == name {
			return m
		}
	}
	return nil // checkStandbys matched every standby to a member
}
