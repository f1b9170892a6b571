// SPDX-License-Identifier: Apache-2.0

// Package group is VDEchp's global commit (issue 13, first part): several
// protected VMs, each with its own primary and backup, checkpointed in
// rounds by one coordinator, and their external output released only when
// every member's backup holds the round.
//
//	coordinator: tick -> ROUND r to every member (in parallel)
//	member:      pause, capture, resume (its epoch e_r) -> ship -> its backup's ACK -> DONE r
//	coordinator: every DONE r (within RoundTimeout) -> COMMIT r to every member
//	member:      release its held output of epochs <= e_r
//
// A member that misses the timeout (hung, or gone mid-round) fails the
// round: nobody commits it and Run returns ErrMemberFailed naming it, so
// the group's recovery can start from the last committed round. Not built
// yet: the coordinator's link to remote members, internal frames released
// without a commit and coloured by round (Lai-Yang), and the group's
// rollback to its last committed round.
package group

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"
)

// ErrMemberFailed is a member that did not complete a round in time.
var ErrMemberFailed = errors.New("group member failed")

// Member is one VM of the group as the coordinator drives it.
type Member interface {
	Name() string
	// Round checkpoints round r and returns once the member's backup holds
	// it, with the moment the member paused for it.
	Round(ctx context.Context, r uint64) (paused time.Time, err error)
	// Commit releases the member's external output of rounds <= r.
	Commit(r uint64) error
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
	OnRound               func(RoundStats)
	Logger                *slog.Logger
}

// Run drives rounds 1, 2, ... until ctx ends (nil) or a member fails a
// round (ErrMemberFailed; that round is committed by nobody).
func (c *Coordinator) Run(ctx context.Context) error {
	if len(c.Members) == 0 || c.Interval <= 0 {
		return errors.New("group: members and a positive interval are required")
	}
	if c.RoundTimeout <= 0 {
		c.RoundTimeout = 10 * c.Interval
	}
	log := c.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	t := time.NewTicker(c.Interval)
	defer t.Stop()
	for r := uint64(1); ; r++ {
		if r > 1 {
			select {
			case <-ctx.Done():
				return nil
			case <-t.C:
			}
		}
		st, err := c.round(ctx, r)
		if ctx.Err() != nil {
			return nil
		}
		if err != nil {
			log.Error("group round failed: the group must resume from its last committed round", "round", r, "committed", r-1, "err", err)
			return err
		}
		if c.OnRound != nil {
			c.OnRound(st)
		}
	}
}

// round runs round r on every member at once and commits it if all did.
func (c *Coordinator) round(ctx context.Context, r uint64) (RoundStats, error) {
	start := time.Now()
	rctx, cancel := context.WithTimeout(ctx, c.RoundTimeout)
	defer cancel()
	type done struct {
		m      Member
		paused time.Time
		err    error
	}
	results := make(chan done, len(c.Members))
	var wg sync.WaitGroup
	for _, m := range c.Members {
		wg.Go(func() {
			paused, err := m.Round(rctx, r)
			if err == nil && c.UnsafePerMemberCommit {
				err = m.Commit(r)
			}
			results <- done{m, paused, err}
		})
	}
	wg.Wait()
	close(results)
	var pauses []time.Time
	var errs []error
	for d := range results {
		if d.err != nil {
			errs = append(errs, fmt.Errorf("%w: %s in round %d: %w", ErrMemberFailed, d.m.Name(), r, d.err))
			continue
		}
		pauses = append(pauses, d.paused)
	}
	if len(errs) > 0 {
		return RoundStats{}, errors.Join(errs...)
	}
	st := RoundStats{Round: r, Commit: time.Since(start)}
	if !c.UnsafePerMemberCommit {
		for _, m := range c.Members {
			if err := m.Commit(r); err != nil {
				return st, fmt.Errorf("commit round %d on %s: %w", r, m.Name(), err)
			}
		}
	}
	slices.SortFunc(pauses, func(a, b time.Time) int { return a.Compare(b) })
	st.Skew = pauses[len(pauses)-1].Sub(pauses[0])
	return st, nil
}
