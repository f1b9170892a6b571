// SPDX-License-Identifier: Apache-2.0

package netbuf

import (
	"sync/atomic"
	"testing"
	"time"
)

// The pacer holds a writer back while the port has seen fewer than
// sent-window frames, lets it go as the port catches up, and gives up
// (for the rest of the release) when the port stops moving.
func TestPacerWaitsForThePort(t *testing.T) {
	var seen atomic.Uint64
	p := &pacer{injected: func() (uint64, error) { return seen.Load(), nil }, window: 64}
	p.start()
	for i := uint64(1); i <= 64; i++ {
		p.wrote(i) // within the window: never waits
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := uint64(65); i <= 96; i++ {
			p.wrote(i) // frame 96 is a check: 96 > 0+64, waits
		}
	}()
	select {
	case <-done:
		t.Fatal("writer ran 32 frames past the window without waiting")
	case <-time.After(5 * time.Millisecond):
	}
	seen.Store(40) // 96 <= 40+64: free again
	select {
	case <-done:
	case <-time.After(2 * time.Second):
		t.Fatal("writer still waiting after the port caught up")
	}
	if p.off.Load() {
		t.Fatal("pacing turned off although the port made progress")
	}
	start := time.Now()
	for i := uint64(97); i <= 256; i++ {
		p.wrote(i) // the port never moves again: one stall, then no waiting
	}
	if !p.off.Load() {
		t.Fatal("pacing still on after the port stalled")
	}
	if d := time.Since(start); d < paceStall {
		t.Fatalf("gave up after %v, before the %v stall", d, paceStall)
	}
}

func TestNilPacer(t *testing.T) {
	var p *pacer
	p.start()
	p.wrote(paceEvery) // no port counter: nothing to pace against
	if newPacer(nil) != nil {
		t.Fatal("a pacer without a counter")
	}
}
