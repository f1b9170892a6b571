// SPDX-License-Identifier: Apache-2.0

package checkpointer

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/resilire/resilire/checkpointer/codec"
	"github.com/resilire/resilire/checkpointer/wire"
)

// LossPolicy says what the primary does while it has no backup.
type LossPolicy string

const (
	// LossBlock keeps every output frame held until a backup acknowledges
	// a checkpoint again: the guest runs but talks to no one. Safe.
	LossBlock LossPolicy = "block"
	// LossContinue drops the output of the epochs the backup never
	// acknowledged (it must never leave: the backup may resume from an
	// older state), then lets new output flow one interval late with no
	// protection until a backup is back.
	LossContinue LossPolicy = "continue"
)

// ParseLossPolicy accepts "block" or "continue".
func ParseLossPolicy(s string) (LossPolicy, error) {
	switch LossPolicy(s) {
	case LossBlock, LossContinue:
		return LossPolicy(s), nil
	}
	return "", fmt.Errorf("backup loss policy %q: want block or continue", s)
}

// Defaults for PrimaryConfig and BackupConfig.
const (
	DefaultInterval          = 50 * time.Millisecond
	DefaultHeartbeatInterval = 100 * time.Millisecond
	DefaultHeartbeatTimeout  = 1 * time.Second
	DefaultAckTimeout        = 10 * time.Second
	DefaultRetryInterval     = 1 * time.Second
	DefaultPrecopyRounds     = 5
	DefaultPrecopyStopPages  = 256
	precopyChunkPages        = 2048 // 8 MiB read and in flight at a time
)

// PrimaryConfig configures the protecting agent.
type PrimaryConfig struct {
	Domain Domain
	Output OutputCommit
	Codec  codec.Codec
	// Dial connects to the backup (DialTCP).
	Dial func(ctx context.Context) (net.Conn, error)
	// Interval between checkpoints; DefaultInterval (50 ms) if zero.
	Interval time.Duration
	// HeartbeatInterval and HeartbeatTimeout: a backup silent for the
	// timeout is lost.
	HeartbeatInterval, HeartbeatTimeout time.Duration
	// AckTimeout bounds the wait for one checkpoint's ACK.
	AckTimeout time.Duration
	// RetryInterval spaces reconnection attempts.
	RetryInterval time.Duration
	// OnBackupLoss is LossBlock unless set.
	OnBackupLoss LossPolicy
	// PrecopyRounds is the number of rounds after the full copy (negative:
	// no pre-copy, the first checkpoint copies every page in one pause);
	// PrecopyStopPages ends pre-copy early when fewer pages are dirty.
	PrecopyRounds    int
	PrecopyStopPages int
	// Progress, if set, is told how far the initial copy is.
	Progress func(done, total uint64)
	// Pipeline takes epoch e+1 while e is still being shipped and acked
	// (at most one epoch in flight besides the one being taken).
	Pipeline bool
	// Input, if set, is the guest's input log: each record is shipped to
	// the backup for replay after a failover (INPUT frames).
	Input *InputQueue
	// ScrubEvery, if positive, compares a hash tree of all guest memory
	// with the backup's replica every that many epochs (scrub.go); 0 is
	// off. The CLI defaults to DefaultScrubEvery.
	ScrubEvery int
	// Disk, if set, is the guest's disk export: each epoch's writes travel
	// with its checkpoint. The backup must have a disk of the same size.
	Disk DiskSource
	// DiskProgress, if set, is told how far the initial disk copy is.
	DiskProgress func(done, total uint64)
	// Tick, if set, replaces the Interval ticker while protected: one epoch
	// per receive (a group coordinator's rounds, checkpointer/group).
	Tick <-chan struct{}
	// Hold, if set, is called with the guest paused, after each epoch's
	// capture succeeded; the guest resumes when it returns (a
	// stop-the-world group snapshot keeps every member's guest paused
	// until all of them captured the round). An error fails the epoch.
	Hold func(ctx context.Context, epoch uint64) error
	// MaxSkippedEpochs is how many epochs in a row may be skipped because
	// Pause was refused (ErrPauseRefused) before the agent gives up; the
	// output of skipped epochs stays held until the next commit. 0 makes
	// the first refusal fatal.
	MaxSkippedEpochs int
	// OnEpoch, if set, is called after every committed epoch.
	OnEpoch func(EpochStats)
	Logger  *slog.Logger
	Metrics *Metrics
}

// Primary runs the epoch loop for one protected VM.
type Primary struct {
	cfg PrimaryConfig
	log *slog.Logger
	m   *Metrics
	enc codec.Encoder

	pfns     []uint64 // pre-copy scratch
	buf      []byte   // pre-copy scratch
	bufs     [2]capBuf
	fullNext bool
	// reconnected: protect ran before (a group member then waits for a
	// round before its first epoch).
	reconnected bool
	epochs      uint64 // epochs taken, for ScrubEvery
	skipped     int    // epochs skipped in a row: Pause refused (pause)
	tracking    string // dirty-tracking mechanism last exported
	scrub       primaryScrub
	// lastRelease is the last unprotected release (continue policy).
	lastRelease time.Time
	// switchReq carries Switchover's requests to the epoch loop.
	switchReq chan chan error
	// beforeHandover, if set (tests), runs as the handover starts.
	beforeHandover func()

	mu     sync.Mutex
	state  string
	acked  uint64
	status Status
	// synced: a session is past its initial synchronisation (Protecting).
	synced bool
}

// NewPrimary checks cfg and fills in defaults.
func NewPrimary(cfg PrimaryConfig) (*Primary, error) {
	if cfg.Domain == nil || cfg.Output == nil || cfg.Codec == nil || cfg.Dial == nil {
		return nil, errors.New("primary: domain, output, codec and dial are required")
	}
	setDefault(&cfg.Interval, DefaultInterval)
	setDefault(&cfg.HeartbeatInterval, DefaultHeartbeatInterval)
	setDefault(&cfg.HeartbeatTimeout, DefaultHeartbeatTimeout)
	setDefault(&cfg.AckTimeout, DefaultAckTimeout)
	setDefault(&cfg.RetryInterval, DefaultRetryInterval)
	if cfg.OnBackupLoss == "" {
		cfg.OnBackupLoss = LossBlock
	}
	if _, err := ParseLossPolicy(string(cfg.OnBackupLoss)); err != nil {
		return nil, err
	}
	if cfg.PrecopyRounds == 0 {
		cfg.PrecopyRounds = DefaultPrecopyRounds
	}
	if cfg.PrecopyStopPages == 0 {
		cfg.PrecopyStopPages = DefaultPrecopyStopPages
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Metrics == nil {
		cfg.Metrics = NewMetrics(nil, "primary", cfg.Domain.Name())
	}
	enc, err := cfg.Codec.NewEncoder(cfg.Domain.MemorySize())
	if err != nil {
		return nil, fmt.Errorf("primary encoder: %w", err)
	}
	p := &Primary{cfg: cfg, log: cfg.Logger, m: cfg.Metrics, enc: enc, switchReq: make(chan chan error)}
	p.setState(StateConnecting)
	p.observeTracking()
	return p, nil
}

// observeTracking exports the domain's dirty-tracking mechanism, which can
// change at run time (a driver falling back).
func (p *Primary) observeTracking() {
	r, ok := p.cfg.Domain.(TrackingReporter)
	if !ok {
		return
	}
	if m := r.DirtyTracking().Mechanism; m != p.tracking {
		p.m.DirtyTracker.Reset()
		p.m.DirtyTracker.WithLabelValues(m).Set(1)
		p.tracking = m
	}
}

func setDefault(d *time.Duration, v time.Duration) {
	if *d <= 0 {
		*d = v
	}
}

// Run protects the VM until ctx ends or a fatal error. Losing the backup
// is not fatal: the loss policy applies and the primary reconnects, then
// resynchronises in full. Output still held when Run returns stays held.
func (p *Primary) Run(ctx context.Context) error {
	defer func() {
		if p.State() != StateHandedOver {
			p.setState(StateStopped)
		}
	}()
	if err := p.cfg.Domain.EnableDirtyLog(ctx); err != nil {
		return fmt.Errorf("enable dirty log: %w", err)
	}
	var s *session
	for {
		if s == nil {
			var err error
			if s, err = p.awaitBackup(ctx); err != nil {
				return err
			}
		}
		err := p.protect(ctx, s)
		s.close()
		s = nil
		if ctx.Err() != nil || errors.Is(err, errHandedOver) {
			return nil
		}
		if !errors.Is(err, ErrBackupLost) && !errors.Is(err, wire.ErrRefused) {
			return err
		}
		// The backup may hold any prefix of what was sent: forget it all.
		p.enc.Reset()
		p.log.Error("backup lost: guest no longer protected", "vm", p.cfg.Domain.Name(),
			"epoch", p.ackedEpoch(), "policy", p.cfg.OnBackupLoss, "err", err)
		if p.cfg.OnBackupLoss == LossContinue {
			// Unacknowledged output must never leave: drop it.
			if err := p.cfg.Output.Discard(); err != nil {
				return fmt.Errorf("discard unacknowledged output: %w", err)
			}
		}
	}
}

// protect synchronises the backup, then runs epochs until the session fails.
func (p *Primary) protect(ctx context.Context, s *session) error {
	p.setState(StateSyncing)
	err := p.initialSync(ctx, s)
	p.buf = nil // the pre-copy's chunk buffer: dom0 memory, not needed again
	if err != nil {
		return err
	}
	p.setSynced(true)
	defer p.setSynced(false)
	if p.cfg.Pipeline {
		return p.pipeline(ctx, s)
	}
	t := time.NewTicker(p.cfg.Interval)
	defer t.Stop()
	tick := p.ticker(t)
	for first := p.firstAtOnce(); ; first = false {
		if !first {
			select {
			case <-ctx.Done():
				return nil
			case <-s.dead:
				return s.err
			case req := <-p.switchReq:
				return p.answerSwitchover(ctx, s, req)
			case <-tick:
			case <-p.cfg.Tick:
			case <-p.diskPressure():
				t.Reset(p.cfg.Interval)
			}
		}
		if _, err := p.runEpoch(ctx, s); err != nil {
			return err
		}
	}
}

// awaitBackup dials until a backup answers. Meanwhile the loss policy
// applies: block holds all output; continue releases it every interval.
func (p *Primary) awaitBackup(ctx context.Context) (*session, error) {
	switch {
	case p.cfg.OnBackupLoss == LossContinue:
		p.setState(StateUnprotected)
	case p.ackedEpoch() > 0:
		p.setState(StateBlocked)
	default:
		p.setState(StateConnecting) // never protected yet: output held too
	}
	found := make(chan *session, 1)
	dctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			s, err := p.dialSession(dctx)
			if err == nil {
				found <- s
				return
			}
			p.log.Warn("no backup", "vm", p.cfg.Domain.Name(), "err", err)
			select {
			case <-dctx.Done():
				return
			case <-time.After(p.cfg.RetryInterval):
			}
		}
	}()
	defer func() { cancel(); wg.Wait() }()
	t := time.NewTicker(p.cfg.Interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case s := <-found:
			return s, nil
		case <-t.C:
			if p.cfg.OnBackupLoss == LossContinue {
				if err := p.releaseUnprotected(ctx); err != nil {
					return nil, err
				}
			}
		}
	}
}

// releaseUnprotected closes and releases an epoch with no checkpoint
// (continue policy only). Advance still runs inside a pause, as the output
// buffer's contract asks, but the pause covers nothing else.
func (p *Primary) releaseUnprotected(ctx context.Context) error {
	p.lastRelease = time.Now()
	if ok, err := p.pause(ctx); !ok {
		return err // skipped: this interval's output goes with the next
	}
	e, err := p.cfg.Output.Advance()
	if rerr := p.cfg.Domain.Resume(ctx); rerr != nil {
		return fmt.Errorf("resume: %w", rerr)
	}
	if err != nil {
		return fmt.Errorf("advance unprotected epoch: %w", err)
	}
	release := p.cfg.Output.Release
	if u, ok := p.cfg.Output.(UnprotectedReleaser); ok {
		release = u.ReleaseUnprotected
	}
	if err := release(e); err != nil {
		return fmt.Errorf("release unprotected epoch %d: %w", e, err)
	}
	return nil
}

// firstAtOnce reports whether the session's first epoch is taken at once:
// always, except a group member's after a reconnection (its backup may
// hold a checkpoint the group has not committed, and only a round's tick
// may tell it the group did).
func (p *Primary) firstAtOnce() bool {
	atOnce := p.cfg.Tick == nil || !p.reconnected
	p.reconnected = true
	return atOnce
}

// ticker is the Interval ticker's channel, nil (never) when Config.Tick
// triggers the epochs instead.
func (p *Primary) ticker(t *time.Ticker) <-chan time.Time {
	if p.cfg.Tick != nil {
		return nil
	}
	return t.C
}

// talkDuringSync keeps a continue-policy guest talking, about one interval
// late, while a new backup is synchronised: nothing is protected before the
// first consistent checkpoint, so this is the unprotected state going on,
// not a new risk, and clients see no stall for the length of the copy.
// The synchronisation calls it between chunks.
func (p *Primary) talkDuringSync(ctx context.Context) error {
	if p.cfg.OnBackupLoss != LossContinue || time.Since(p.lastRelease) < p.cfg.Interval {
		return nil
	}
	return p.releaseUnprotected(ctx)
}

// observeOutput copies the output buffer's counters into the metrics.
func (p *Primary) observeOutput() {
	if st, ok := p.cfg.Output.(OutputStats); ok {
		p.m.HeldBytes.Set(float64(st.HeldBytes()))
		p.m.Drops.Set(float64(st.Dropped()))
	}
}
