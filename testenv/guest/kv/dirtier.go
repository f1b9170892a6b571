// SPDX-License-Identifier: Apache-2.0

package kv

import (
	"context"
	"sync/atomic"
	"time"
)

const (
	// DirtyBufferPages is the size of the dirtier's buffer in 4 KiB pages
	// (32 MiB): enough to exceed any epoch's dirty set at the rates tests use.
	DirtyBufferPages = 8192
	// DirtyTick is how often the dirtier writes its quota of pages.
	DirtyTick = 10 * time.Millisecond
	pageSize  = 4096
)

// Dirtier writes a configurable number of pages of a private buffer every
// DirtyTick, cycling through the buffer, so that a test can load the
// checkpointer with a known dirty rate.
type Dirtier struct {
	buf     []byte
	rate    atomic.Int64
	dirtied atomic.Uint64
}

// NewDirtier returns a stopped dirtier; Run allocates its buffer.
func NewDirtier() *Dirtier { return &Dirtier{} }

// SetRate sets the pages dirtied per tick (0 stops).
func (d *Dirtier) SetRate(n int) { d.rate.Store(int64(n)) }

// Rate returns the pages dirtied per tick.
func (d *Dirtier) Rate() int { return int(d.rate.Load()) }

// Dirtied returns the pages written since start.
func (d *Dirtier) Dirtied() uint64 { return d.dirtied.Load() }

// Run dirties pages until ctx is done.
func (d *Dirtier) Run(ctx context.Context) {
	d.buf = make([]byte, DirtyBufferPages*pageSize)
	t := time.NewTicker(DirtyTick)
	defer t.Stop()
	next := 0
	var stamp uint64
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		n := int(d.rate.Load())
		for i := 0; i < n; i++ {
			stamp++
			off := next * pageSize
			// One 8-byte store per page is enough to change its hash.
			for b := 0; b < 8; b++ {
				d.buf[off+b] = byte(stamp >> (8 * b))
			}
			next = (next + 1) % DirtyBufferPages
		}
		d.dirtied.Add(uint64(n))
	}
}
