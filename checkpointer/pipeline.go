// SPDX-License-Identifier: Apache-2.0

package checkpointer

import (
	"context"
	"sync"
	"time"
)

// pipeline runs the epoch loop with shipping overlapped: this goroutine
// takes a checkpoint every tick (the pause), one shipper goroutine encodes,
// streams, waits for the ACK and releases, one checkpoint at a time and in
// epoch order. The hand-off is unbuffered and there are two capture
// buffers, so a buffer is refilled only after the shipper took the other.
// A checkpoint taken but not shipped when the session fails is dropped:
// its output is never released (the loss policy then applies).
func (p *Primary) pipeline(ctx context.Context, s *session) error {
	work := make(chan *checkpoint)
	errc := make(chan error, 1)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for c := range work {
			if err := p.ship(ctx, s, c); err != nil {
				errc <- err
				return
			}
		}
	}()
	var once sync.Once
	drain := func() { once.Do(func() { close(work); wg.Wait() }) }
	defer drain()

	t := time.NewTicker(p.cfg.Interval)
	defer t.Stop()
	tick := p.ticker(t)
	atOnce := p.firstAtOnce()
	taken := 0 // checkpoints handed to the shipper: which buffer is free
	for i := 0; ; i++ {
		if i > 0 || !atOnce {
			select {
			case <-ctx.Done():
				return nil
			case <-s.dead:
				return s.err
			case err := <-errc:
				return err
			case req := <-p.switchReq:
				// Ship what is in flight first, then hand over.
				drain()
				select {
				case err := <-errc:
					req <- err
					return err
				default:
				}
				return p.answerSwitchover(ctx, s, req)
			case <-tick:
			case <-p.cfg.Tick:
			case <-p.diskPressure():
				// The epoch wrote as much disk data as one may stage: cut now.
				t.Reset(p.cfg.Interval)
			}
		}
		c, err := p.take(ctx, s, &p.bufs[taken%2])
		if err != nil {
			return err
		}
		if c == nil {
			continue // skipped: the next take refills the same buffer
		}
		taken++
		select {
		case work <- c:
		case err := <-errc:
			return err
		case <-ctx.Done():
			return nil
		}
	}
}
