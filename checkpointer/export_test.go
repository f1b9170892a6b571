// SPDX-License-Identifier: Apache-2.0

package checkpointer

import (
	"context"
	"crypto/sha256"
)

// Test hooks for the external tests (package checkpointer_test), which
// also use the simulated guests of package sim.

// ReplicaHash hashes the backup's replica under the lock that guards applies.
func (b *Backup) ReplicaHash() [32]byte {
	b.mu.Lock()
	defer b.mu.Unlock()
	return sha256.Sum256(b.cfg.Replica.Memory())
}

// StateNow is the backup's state.
func (b *Backup) StateNow() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.state
}

// InputKept is the number of input frames the backup keeps for replay.
func (b *Backup) InputKept() int {
	b.input.mu.Lock()
	defer b.input.mu.Unlock()
	return len(b.input.recs)
}

// TakeEpoch runs one epoch's pause (take) without a backup, for
// BenchmarkPause16MiB.
func (p *Primary) TakeEpoch(ctx context.Context, i int) (EpochStats, error) {
	c, err := p.take(ctx, &session{}, &p.bufs[i%2])
	if err != nil {
		return EpochStats{}, err
	}
	return c.stats, nil
}

// FrameOf and TagsOf build and read back distinguishable test frames.
var (
	FrameOf = frameOf
	TagsOf  = tagsOf
	// AllPages lists every page number below n.
	AllPages = allPages
)

// SessionEnded reports whether the last primary session has ended (its
// handler returned after consuming what the connection held).
func (b *Backup) SessionEnded() bool {
	b.mu.Lock()
	s := b.cur
	b.mu.Unlock()
	if s == nil {
		return true
	}
	select {
	case <-s.done:
		return true
	default:
		return false
	}
}

// FailoverNow runs the failover the heartbeat watchdog would run, without
// waiting out a timeout.
func (b *Backup) FailoverNow(ctx context.Context) error { return b.failover(ctx, "test") }

// BeforeHandover runs f as a switchover's handover starts (before the pause).
func (p *Primary) BeforeHandover(f func()) { p.beforeHandover = f }
