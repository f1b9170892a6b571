// SPDX-License-Identifier: Apache-2.0

package bank

import (
	"context"
	"errors"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// LoadOptions tune RunLoad.
type LoadOptions struct {
	Dial    Dialer // nil: net.Dialer
	Addr    string
	Conns   int           // concurrent connections (at least 1)
	Every   time.Duration // pause between a connection's transfers (0: none)
	Timeout time.Duration // per request and per dial; 0 means 5s

	acked *atomic.Int64 // counts acknowledged transfers as they come (Background)
}

// LoadResult is what a load sent and what came back. Check compares it with
// an Audit.
type LoadResult struct {
	Acked      []uint64 // acknowledged transfers
	Unresolved []uint64 // sent, never acknowledged nor refused (may or may not be committed)
	Refused    int      // ErrInsufficient answers
	Reconnects int
	Errors     int // other errors seen (each followed by a reconnect)
	// Latencies of acknowledged transfers, from the first send of the id
	// to its acknowledgement (retries after a failover included).
	Latencies []time.Duration
	// AckedAt are the moments of the acknowledgements (in no order).
	AckedAt []time.Time
}

const (
	backoffMin = 10 * time.Millisecond
	backoffMax = 500 * time.Millisecond
	// maxAmount keeps most transfers fundable and some not.
	maxAmount = 300
)

// RunLoad runs transfers from o.Conns concurrent connections, each its own
// Client, with random accounts and amounts and unique ids, until ctx is
// done. A connection that breaks is dialled again (bounded exponential
// backoff) and its unacknowledged transfer retried under the same id, so
// that after a failover it resolves: acknowledged, or refused with nothing
// applied. A transfer still pending when ctx ends is Unresolved.
func RunLoad(ctx context.Context, o LoadOptions) LoadResult {
	if o.Conns < 1 {
		o.Conns = 1
	}
	if o.Timeout <= 0 {
		o.Timeout = 5 * time.Second
	}
	// Ids count up from a random base (below 2^63, with room for 2^32
	// transfers), so that two loads on one database do not share ids.
	var next atomic.Uint64
	next.Store(rand.Uint64N(1<<31)<<32 | 1)
	var (
		mu  sync.Mutex
		all LoadResult
		wg  sync.WaitGroup
	)
	for range o.Conns {
		wg.Go(func() {
			r := loadConn(ctx, o, &next)
			mu.Lock()
			defer mu.Unlock()
			all.Acked = append(all.Acked, r.Acked...)
			all.Unresolved = append(all.Unresolved, r.Unresolved...)
			all.Latencies = append(all.Latencies, r.Latencies...)
			all.AckedAt = append(all.AckedAt, r.AckedAt...)
			all.Refused += r.Refused
			all.Reconnects += r.Reconnects
			all.Errors += r.Errors
		})
	}
	wg.Wait()
	slices.Sort(all.Acked)
	slices.Sort(all.Unresolved)
	return all
}

// loader is one connection's state.
type loader struct {
	o         LoadOptions
	c         *Client
	connected bool // a dial has succeeded before: the next one is a reconnect
	backoff   time.Duration
	r         LoadResult
}

type outcome int

const (
	pending outcome = iota // sent or not; ctx ended first
	acked
	refused
)

// Background is a RunLoad running on its own goroutine.
type Background struct {
	cancel context.CancelFunc
	done   chan LoadResult
	acked  atomic.Int64
}

// Start runs RunLoad(ctx, o) in the background until Stop or ctx ends.
func Start(ctx context.Context, o LoadOptions) *Background {
	ctx, cancel := context.WithCancel(ctx)
	b := &Background{cancel: cancel, done: make(chan LoadResult, 1)}
	o.acked = &b.acked
	go func() { b.done <- RunLoad(ctx, o) }()
	return b
}

// Acked is how many transfers have been acknowledged so far.
func (b *Background) Acked() int64 { return b.acked.Load() }

// Stop ends the load and returns its result. Only the first call returns
// it; a deferred Stop after that returns the zero result at once.
func (b *Background) Stop() LoadResult {
	b.cancel()
	r, ok := <-b.done
	if ok {
		close(b.done)
	}
	return r
}

// loadConn is one connection's loop.
func loadConn(ctx context.Context, o LoadOptions, next *atomic.Uint64) LoadResult {
	l := &loader{o: o, backoff: backoffMin}
	defer func() {
		if l.c != nil {
			l.c.Close()
		}
	}()
	for n := 0; ctx.Err() == nil; n++ {
		if n > 0 && !sleep(ctx, o.Every) {
			break
		}
		id := next.Add(1)
		src := rand.IntN(Accounts)
		dst := (src + 1 + rand.IntN(Accounts-1)) % Accounts
		amount := 1 + rand.Int64N(maxAmount)
		start := time.Now()
		out, sent := l.resolve(ctx, id, src, dst, amount)
		switch {
		case out == acked:
			l.r.Acked = append(l.r.Acked, id)
			l.r.Latencies = append(l.r.Latencies, time.Since(start))
			l.r.AckedAt = append(l.r.AckedAt, time.Now())
			if o.acked != nil {
				o.acked.Add(1)
			}
		case out == refused:
			l.r.Refused++
		case sent:
			l.r.Unresolved = append(l.r.Unresolved, id)
		}
	}
	return l.r
}

// resolve sends the transfer until it is acknowledged or refused,
// reconnecting after every error, or until ctx is done. sent reports whether
// the request was ever written (or may have been), so could have committed.
func (l *loader) resolve(ctx context.Context, id uint64, src, dst int, amount int64) (out outcome, sent bool) {
	for {
		if l.c == nil && !l.dial(ctx) {
			return pending, sent
		}
		sent = true
		rctx, cancel := context.WithTimeout(ctx, l.o.Timeout)
		err := l.c.Transfer(rctx, id, src, dst, amount)
		cancel()
		switch {
		case err == nil:
			l.backoff = backoffMin
			return acked, sent
		case errors.Is(err, ErrInsufficient):
			l.backoff = backoffMin
			return refused, sent
		}
		l.c.Close()
		l.c = nil
		if ctx.Err() != nil {
			return pending, sent
		}
		l.r.Errors++
		if !l.pause(ctx) {
			return pending, sent
		}
	}
}

// dial connects, retrying with backoff until it succeeds or ctx is done.
func (l *loader) dial(ctx context.Context) bool {
	for {
		dctx, cancel := context.WithTimeout(ctx, l.o.Timeout)
		c, err := Dial(dctx, l.o.Dial, l.o.Addr)
		cancel()
		if err == nil {
			if l.connected {
				l.r.Reconnects++
			}
			l.c, l.connected = c, true
			return true
		}
		if !l.pause(ctx) {
			return false
		}
	}
}

// pause sleeps the current backoff and doubles it, up to backoffMax.
func (l *loader) pause(ctx context.Context) bool {
	ok := sleep(ctx, l.backoff)
	l.backoff = min(2*l.backoff, backoffMax)
	return ok
}

// sleep waits d or until ctx is done, and reports whether ctx is still live.
func sleep(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
