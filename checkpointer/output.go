// SPDX-License-Identifier: Apache-2.0

package checkpointer

import (
	"sync"
	"time"
)

// OutputCommit is the engine's view of the output buffer (netbuf.Buffer
// implements it). Invariant 1 of the design lives here: Release(e) is
// called only after the backup acknowledged checkpoint e.
type OutputCommit interface {
	// Advance closes the current epoch and returns it; frames the guest
	// sends from now on belong to the next epoch. Called with the guest
	// paused, so the cut is exact.
	Advance() (uint64, error)
	// Release lets every held frame of epochs <= e leave, in order.
	Release(e uint64) error
	// Discard drops everything held (output that must never leave).
	Discard() error
}

// UnprotectedReleaser is optionally implemented by an OutputCommit that
// holds output beyond the primary's own backup's ACK (a group member's,
// released on the group's commit): with the continue loss policy and no
// backup, the primary releases each epoch with ReleaseUnprotected, which
// must let it leave at once.
type UnprotectedReleaser interface {
	ReleaseUnprotected(e uint64) error
}

// OutputStats is optionally implemented by an OutputCommit to feed the
// held-bytes and drops metrics.
type OutputStats interface {
	// HeldBytes is the guest output currently held.
	HeldBytes() uint64
	// Dropped is the number of frames dropped because the buffer (or the
	// injection tap's queue) was full.
	Dropped() uint64
}

// EpochCounter is an OutputCommit for a guest without a protected network
// port (the simulated domain): it only numbers epochs.
type EpochCounter struct {
	mu       sync.Mutex
	current  uint64
	released uint64
}

// NewEpochCounter starts at the Unix time in milliseconds, so a restarted
// primary numbers its epochs above any epoch it produced before (at
// intervals of 1 ms or more), and a backup that still holds one of them
// accepts the new ones. This is where an agent without a data-plane port
// starts numbering; a port starts at dataplane.FirstEpoch and keeps its
// pinned epoch across agent restarts.
func NewEpochCounter() *EpochCounter { return NewEpochCounterAt(uint64(time.Now().UnixMilli())) }

// NewEpochCounterAt starts at epoch first (at least 1); for tests.
func NewEpochCounterAt(first uint64) *EpochCounter { return &EpochCounter{current: max(first, 1)} }

// Advance implements OutputCommit.
func (c *EpochCounter) Advance() (uint64, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.current++
	return c.current - 1, nil
}

// Release implements OutputCommit.
func (c *EpochCounter) Release(e uint64) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.released = max(c.released, e)
	return nil
}

// Discard implements OutputCommit.
func (c *EpochCounter) Discard() error { return nil }

// Released is the highest epoch released so far.
func (c *EpochCounter) Released() uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.released
}
