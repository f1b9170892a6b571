// SPDX-License-Identifier: Apache-2.0

package group

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/resilire/resilire/checkpointer"
)

// LocalMember is a member whose primary runs in this process: its epochs
// are taken on the coordinator's rounds (PrimaryConfig.Tick) and its
// output released on the group's commits (GatedOutput).
type LocalMember struct {
	name string
	P    *checkpointer.Primary
	out  *GatedOutput
	tick chan struct{}
	dom  checkpointer.Domain

	abortOnce sync.Once
	aborted   chan struct{}
	stopped   chan struct{} // closed when Run returned

	// halt is the stop-the-world round in progress (Halt), nil if none.
	haltMu sync.Mutex
	halt   *halt
}

// halt is one stop-the-world round on a member: its guest captured the
// round and waits, paused, for the coordinator's ROUND.
type halt struct {
	round    uint64
	captured chan struct{} // closed by the epoch's Hold
	release  chan struct{} // closed by Round
}

// ErrAborted is a member the group told to stop.
var ErrAborted = errors.New("group member aborted: the group resumed from an earlier round elsewhere")

// NewLocalMember builds the member's primary from cfg: Tick and Output are
// taken over (cfg.Output becomes the gated output's inner one).
func NewLocalMember(name string, cfg checkpointer.PrimaryConfig) (*LocalMember, error) {
	if cfg.Output == nil {
		return nil, errors.New("group member: an output is required")
	}
	m := &LocalMember{name: name, out: NewGatedOutput(cfg.Output), tick: make(chan struct{}), dom: cfg.Domain,
		aborted: make(chan struct{}), stopped: make(chan struct{})}
	cfg.Output, cfg.Tick, cfg.Hold = m.out, m.tick, m.hold
	cfg.MaxSkippedEpochs = 0 // a round is taken or fails: never skipped
	p, err := checkpointer.NewPrimary(cfg)
	if err != nil {
		return nil, err
	}
	m.P = p
	return m, nil
}

// Name is the member's name.
func (m *LocalMember) Name() string { return m.name }

// backupWatch is how often a round in progress looks whether the member's
// primary still has its backup.
const backupWatch = 20 * time.Millisecond

// withBackup runs f with a context cancelled once the member's primary is
// no longer protecting (its backup lost, or being filled again); f's
// error is then ErrNoBackup.
func (m *LocalMember) withBackup(ctx context.Context, f func(context.Context) error) error {
	select {
	case <-m.stopped:
		return errors.New("member stopped: its primary no longer runs")
	default:
	}
	if m.noBackup() {
		return fmt.Errorf("%w: %s's primary is %s", ErrNoBackup, m.name, m.P.State())
	}
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	go func() {
		t := time.NewTicker(backupWatch)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				if m.noBackup() {
					cancel(fmt.Errorf("%w: %s's primary lost its backup during the round", ErrNoBackup, m.name))
					return
				}
			}
		}
	}()
	err := f(ctx)
	if cause := context.Cause(ctx); err != nil && errors.Is(cause, ErrNoBackup) {
		return cause
	}
	return err
}

// noBackup reports whether the member's primary runs without a backup it
// is past the initial synchronisation with (a primary that is stopping is
// not one: it fails the round as any dead member does).
func (m *LocalMember) noBackup() bool {
	if m.P.Protecting() {
		return false
	}
	switch m.P.State() {
	case checkpointer.StateConnecting, checkpointer.StateSyncing, checkpointer.StateBlocked, checkpointer.StateUnprotected:
		return true
	}
	return false
}

// Round triggers the member's epoch for round r (or, after Halt(r), lets
// its guest resume) and waits until its backup acknowledged it. A member
// whose primary has no backup fails it with ErrNoBackup.
func (m *LocalMember) Round(ctx context.Context, r uint64) (d Done, err error) {
	err = m.withBackup(ctx, func(ctx context.Context) error {
		d, err = m.round(ctx, r)
		return err
	})
	return d, err
}

func (m *LocalMember) round(ctx context.Context, r uint64) (Done, error) {
	m.haltMu.Lock()
	h := m.halt
	m.halt = nil
	m.haltMu.Unlock()
	if h != nil && h.round == r {
		close(h.release)
	} else if err := m.trigger(ctx, r); err != nil {
		return Done{}, err
	}
	d, err := m.out.waitAcked(ctx, r)
	if err != nil {
		return d, err
	}
	// The member's checkpoint of round r is safe: frames of round r+1 its
	// data plane held (from members already past r) may reach the guest.
	if c := m.out.colourer(); c != nil {
		if _, err := c.ReleaseHeld(uint32(r + 1)); err != nil {
			return d, fmt.Errorf("release held internal frames of round %d: %w", r+1, err)
		}
	}
	return d, nil
}

// trigger starts the member's epoch for round r.
func (m *LocalMember) trigger(ctx context.Context, r uint64) error {
	m.out.expect(r)
	select {
	case m.tick <- struct{}{}:
		return nil
	case <-m.aborted:
		m.out.expect(0)
		return errors.New("member aborted")
	case <-ctx.Done():
		m.out.expect(0)
		return fmt.Errorf("not ready for the round: %w", ctx.Err())
	}
}

// Halt is a stop-the-world round's first half: the member's guest pauses
// and captures round r, and stays paused until Round(r) (the coordinator
// sends it once every member captured r). Halt returns once the capture
// is done.
func (m *LocalMember) Halt(ctx context.Context, r uint64) error {
	return m.withBackup(ctx, func(ctx context.Context) error { return m.haltRound(ctx, r) })
}

func (m *LocalMember) haltRound(ctx context.Context, r uint64) error {
	h := &halt{round: r, captured: make(chan struct{}), release: make(chan struct{})}
	m.haltMu.Lock()
	old := m.halt
	m.halt = h
	m.haltMu.Unlock()
	if old != nil {
		// A halted round the coordinator gave up on (another member
		// failed it): the guest resumes, that epoch ships as any other.
		close(old.release)
	}
	if err := m.trigger(ctx, r); err != nil {
		return err
	}
	select {
	case <-h.captured:
		return nil
	case <-m.aborted:
		return errors.New("member aborted")
	case <-m.stopped:
		return errors.New("member stopped")
	case <-ctx.Done():
		return fmt.Errorf("round %d not captured: %w", r, ctx.Err())
	}
}

// haltLimit bounds how long a halted guest waits for the coordinator's
// ROUND: a coordinator that died mid-round does not keep it paused.
const haltLimit = 10 * time.Second

// hold is the primary's Hold: on a halted round, the guest stays paused
// until the coordinator's ROUND (or the member's abort, or haltLimit).
func (m *LocalMember) hold(ctx context.Context, _ uint64) error {
	m.haltMu.Lock()
	h := m.halt
	m.haltMu.Unlock()
	if h == nil {
		return nil
	}
	close(h.captured)
	t := time.NewTimer(haltLimit)
	defer t.Stop()
	select {
	case <-h.release:
		return nil
	case <-m.aborted:
		return ErrAborted
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		m.haltMu.Lock()
		if m.halt == h {
			m.halt = nil
		}
		m.haltMu.Unlock()
		return nil // the round goes on as an ordinary one
	}
}

// Colours is a member's data-plane colouring (dataplane.Port and its
// HoldQueue): frames to other members carry the sender's round and are not
// held for the commit; a frame from a later round waits until the
// receiver's own checkpoint.
type Colours interface {
	// SetRound sets the round the guest executes, its colour.
	SetRound(r uint32) error
	// ReleaseHeld delivers the held frames of colours up to r.
	ReleaseHeld(r uint32) (int, error)
	// Leave stops colouring (round 0: the guest's frames carry no round
	// and nothing is held for it) and delivers every held frame: the
	// member left the group's protection. The next round's SetRound
	// colours again.
	Leave() error
}

// SetColours colours the member's internal frames from now on: the guest
// executes round 1 until its checkpoint of round 1, and so on. The colour
// advances while the guest is paused for each round's checkpoint; held
// frames are released once that checkpoint is acknowledged.
func (m *LocalMember) SetColours(c Colours) error {
	if err := c.SetRound(1); err != nil {
		return fmt.Errorf("group member %s: colour round 1: %w", m.name, err)
	}
	m.out.mu.Lock()
	m.out.colours = c
	m.out.mu.Unlock()
	return nil
}

// Run protects the member's guest (its primary's Run) until ctx ends or
// the group aborts it (ErrAborted).
func (m *LocalMember) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-m.aborted:
			cancel()
		case <-ctx.Done():
		}
	}()
	err := m.P.Run(ctx)
	close(m.stopped)
	select {
	case <-m.aborted:
		return ErrAborted
	default:
		return err
	}
}

// Abort ends the member for good: its primary stops taking epochs (its
// held output never leaves), then its guest is paused. The group resumes
// it elsewhere from an earlier round; its backup's fence finishes it.
func (m *LocalMember) Abort(ctx context.Context, _ uint64) error {
	m.abortOnce.Do(func() { close(m.aborted) })
	select {
	case <-m.stopped:
	case <-ctx.Done():
		return fmt.Errorf("primary did not stop: %w", ctx.Err())
	}
	if err := m.dom.Pause(ctx); err != nil {
		return fmt.Errorf("pause the guest: %w", err)
	}
	return nil
}

// State says where the member is (a starting coordinator's question). A
// member the group stopped for a recovery no longer says: it is no
// member of any group to come, and no standby coordinator must take its
// silence for a lost coordinator's.
func (m *LocalMember) State(_ context.Context, r uint64) (State, error) {
	select {
	case <-m.aborted:
		return State{}, errors.New("stopped for a group recovery: its guest resumes from its backup")
	default:
	}
	return m.out.state(r), nil
}

// Aborted is closed once the group told this member to stop.
func (m *LocalMember) Aborted() <-chan struct{} { return m.aborted }

// Commit releases the output of the epochs up to round r's.
func (m *LocalMember) Commit(r uint64) error { return m.out.commit(r) }

// GatedOutput holds a member's output until the group commits its round:
// the primary's Release (its own backup's ACK) only records the epoch as
// acknowledged; the inner output releases on commit.
type GatedOutput struct {
	inner checkpointer.OutputCommit

	mu      sync.Mutex
	cond    *sync.Cond
	want    uint64            // the round whose epoch the next Advance closes (0: none)
	last    uint64            // the last round asked for
	epochs  map[uint64]uint64 // round -> its epoch
	paused  map[uint64]time.Time
	acked   uint64 // highest epoch the member's backup acknowledged
	release uint64 // highest epoch released
	colours Colours
	onFirst func() error // run once, at the first round's Advance
}

// OnFirstRound runs f once, while the guest is paused for the member's
// first round, before its epoch closes: a member that runs unprotected
// until the group's first round (a guest the group resumed elsewhere,
// protected again) starts holding its output there.
func (g *GatedOutput) OnFirstRound(f func() error) {
	g.mu.Lock()
	g.onFirst = f
	g.mu.Unlock()
}

func (g *GatedOutput) colourer() Colours {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.colours
}

// NewGatedOutput gates inner.
func NewGatedOutput(inner checkpointer.OutputCommit) *GatedOutput {
	g := &GatedOutput{inner: inner, epochs: map[uint64]uint64{}, paused: map[uint64]time.Time{}}
	g.cond = sync.NewCond(&g.mu)
	return g
}

func (g *GatedOutput) expect(r uint64) {
	g.mu.Lock()
	g.want, g.last = r, max(g.last, r)
	g.mu.Unlock()
}

// state is the member's State for round r.
func (g *GatedOutput) state(r uint64) State {
	g.mu.Lock()
	defer g.mu.Unlock()
	st := State{Last: g.last}
	for k, e := range g.epochs {
		if e <= g.acked && k > st.Acked {
			st.Acked = k
		}
	}
	if e, ok := g.epochs[r]; ok && e <= g.acked {
		st.Epoch = e
	}
	return st
}

// Advance closes the epoch, recording it as round want's.
func (g *GatedOutput) Advance() (uint64, error) {
	g.mu.Lock()
	first := g.onFirst
	if g.want != 0 {
		g.onFirst = nil
	} else {
		first = nil
	}
	g.mu.Unlock()
	if first != nil {
		if err := first(); err != nil {
			return 0, fmt.Errorf("first round: %w", err)
		}
	}
	e, err := g.inner.Advance()
	if err != nil {
		return e, err
	}
	g.mu.Lock()
	r, c := g.want, g.colours
	if r != 0 {
		g.epochs[r], g.paused[r] = e, time.Now()
		g.want = 0
	}
	g.mu.Unlock()
	if r != 0 && c != nil {
		// The guest is paused for round r's checkpoint: what it sends
		// after it belongs to round r+1.
		if err := c.SetRound(uint32(r + 1)); err != nil {
			return e, fmt.Errorf("colour round %d: %w", r+1, err)
		}
	}
	return e, nil
}

// Release records that the member's backup holds epoch e; nothing leaves.
func (g *GatedOutput) Release(e uint64) error {
	g.mu.Lock()
	g.acked = max(g.acked, e)
	g.cond.Broadcast()
	g.mu.Unlock()
	return nil
}

// ReleaseUnprotected lets the output of epochs <= e leave at once: the
// member's primary lost its backup and its loss policy is continue. What
// the guest sends unprotected cannot be taken back, and its backup (gone)
// cannot resume it: the rounds' epochs are forgotten, so that no
// coordinator resumes the group from a round before this (a restarted one
// learns no committed round from this member), and the member stops
// colouring, its held frames delivered, so that its internal traffic does
// not wait for rounds that may never come. A coordinator's next round
// makes it a member again, colours and all.
func (g *GatedOutput) ReleaseUnprotected(e uint64) error {
	g.mu.Lock()
	clear(g.epochs)
	clear(g.paused)
	c := g.colours
	g.release = max(g.release, e)
	g.mu.Unlock()
	if c != nil {
		if err := c.Leave(); err != nil {
			return fmt.Errorf("leave the group's colours: %w", err)
		}
	}
	return g.inner.Release(e)
}

// Discard drops everything held (the loss policy).
func (g *GatedOutput) Discard() error { return g.inner.Discard() }

func (g *GatedOutput) waitAcked(ctx context.Context, r uint64) (Done, error) {
	stop := context.AfterFunc(ctx, func() { g.mu.Lock(); g.cond.Broadcast(); g.mu.Unlock() })
	defer stop()
	g.mu.Lock()
	defer g.mu.Unlock()
	for {
		if e, ok := g.epochs[r]; ok && g.acked >= e {
			return Done{Paused: g.paused[r], Epoch: e}, nil
		}
		if err := ctx.Err(); err != nil {
			return Done{}, fmt.Errorf("round %d not acknowledged: %w", r, err)
		}
		g.cond.Wait()
	}
}

// keepRounds is how many committed rounds' epochs stay known (RoundEpoch).
const keepRounds = 16

// RoundEpoch is the member's epoch of round r, if still known.
func (g *GatedOutput) RoundEpoch(r uint64) (uint64, bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	e, ok := g.epochs[r]
	return e, ok
}

// RoundOf is the round whose epoch is e, if still known.
func (g *GatedOutput) RoundOf(e uint64) (uint64, bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	for r, x := range g.epochs {
		if x == e {
			return r, true
		}
	}
	return 0, false
}

// Output is the member's gated output.
func (m *LocalMember) Output() *GatedOutput { return m.out }

// commit releases the epochs up to that of the last round <= r this
// member took (after a coordinator's restart, a member may not have taken
// every round the others took).
func (g *GatedOutput) commit(r uint64) error {
	g.mu.Lock()
	var e, at uint64
	for k, x := range g.epochs {
		if k <= r && k >= at && x <= g.acked {
			e, at = x, k
		}
	}
	for k := range g.epochs {
		if k+keepRounds <= r {
			delete(g.epochs, k)
			delete(g.paused, k)
		}
	}
	if e == 0 || e <= g.release {
		g.mu.Unlock()
		if e == 0 {
			return fmt.Errorf("commit of round %d: no acknowledged epoch of this member up to it", r)
		}
		return nil
	}
	g.release = e
	g.mu.Unlock()
	return g.inner.Release(e)
}

// LocalStandby is a member's backup running in this process.
type LocalStandby struct {
	Member string
	B      *checkpointer.Backup
}

// Name is the member's name.
func (s LocalStandby) Name() string { return s.Member }

// CanActivateAt says whether ActivateAt(r, epoch) would be followed.
func (s LocalStandby) CanActivateAt(_ context.Context, _, epoch uint64) error {
	return s.B.CanActivateAt(epoch)
}

// ActivateAt resumes the guest from epoch, round r's checkpoint.
func (s LocalStandby) ActivateAt(ctx context.Context, r, epoch uint64) error {
	return s.B.ActivateAt(ctx, r, epoch)
}
