// SPDX-License-Identifier: Apache-2.0

package netbuf

import (
	"context"
	"testing"
	"time"
)

func TestSleepUntilNeverEarly(t *testing.T) {
	for _, d := range []time.Duration{-time.Millisecond, 300 * time.Microsecond, 3 * time.Millisecond} {
		at := time.Now().Add(d)
		if !sleepUntil(context.Background(), at) {
			t.Fatalf("%v: reported a cancelled context", d)
		}
		if now := time.Now(); now.Before(at) {
			t.Fatalf("%v: woke %v early", d, at.Sub(now))
		}
	}
}

func TestSleepUntilCancelled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if sleepUntil(ctx, time.Now().Add(time.Hour)) {
		t.Fatal("sleepUntil reported true for a cancelled context")
	}
}

func TestNextTickDropsMissedTicks(t *testing.T) {
	every := 10 * time.Millisecond
	next := time.Now().Add(every)
	if got := nextTick(next, every); !got.Equal(next.Add(every)) {
		t.Fatalf("on time: next tick %v after the last, want %v", got.Sub(next), every)
	}
	if got := nextTick(time.Now().Add(-time.Second), every); time.Until(got) <= 0 {
		t.Fatalf("after a stall the next tick is %v in the past, want in the future", -time.Until(got))
	}
}
