// SPDX-License-Identifier: Apache-2.0

package group_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/resilire/resilire/checkpointer/group"
)

// A standby coordinator (AwaitTakeover on observer links) waits while the
// leading one runs rounds, takes the group over once it dies, and keeps
// it: the old coordinator coming back with its older term is refused
// (ErrSuperseded) and the new one goes on committing, the global commit
// checked at every release throughout. The control: a coordinator with a
// higher term does take the group from it.
func TestCoordinatorTakeover(t *testing.T) {
	w := newWorld(t, 3, 0)
	dials := serveMembers(t, w)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	coord := func(term uint64, rounds *atomic.Int64) *group.Coordinator {
		return &group.Coordinator{Members: linksTo(t, w, dials), Interval: 10 * time.Millisecond, RoundTimeout: time.Second, Term: term,
			OnRound: func(group.RoundStats) { rounds.Add(1) }}
	}
	waitRounds := func(what string, rounds *atomic.Int64, n int64) {
		t.Helper()
		deadline := time.Now().Add(20 * time.Second)
		for rounds.Load() < n {
			if time.Now().After(deadline) {
				t.Fatalf("%s: %d rounds, want %d", what, rounds.Load(), n)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}

	var aRounds, bRounds atomic.Int64
	actx, stopA := context.WithCancel(ctx)
	a := coord(100, &aRounds)
	aDone := make(chan error, 1)
	go func() { aDone <- a.Run(actx) }()

	const quiet = 400 * time.Millisecond
	b := coord(200, &bRounds)
	took, bDone := make(chan error, 1), make(chan error, 1)
	go func() {
		err := b.Standby(ctx, linksTo(t, w, dials), 20*time.Millisecond, quiet)
		took <- err
		if err == nil {
			bDone <- b.Run(ctx)
		}
	}()
	waitRounds("leader", &aRounds, 30)
	if st := b.Status().State; st != group.StateStandby {
		t.Fatalf("standby coordinator's state %q", st)
	}
	select {
	case err := <-took:
		t.Fatalf("the standby took over while the leader ran rounds: %v", err)
	case <-time.After(3 * quiet):
	}
	aBefore := aRounds.Load()
	waitRounds("leader, with a standby watching", &aRounds, aBefore+20)

	stopA() // the leader's process dies
	if err := <-aDone; err != nil {
		t.Fatalf("leader: %v", err)
	}
	died := time.Now()
	select {
	case err := <-took:
		if err != nil {
			t.Fatalf("standby: %v", err)
		}
	case <-time.After(10 * quiet):
		t.Fatal("the standby did not take over")
	}
	t.Logf("took over %v after the leader died (quiet %v)", time.Since(died).Round(time.Millisecond), quiet)
	waitRounds("new leader", &bRounds, 20)

	// The old leader comes back with its term: refused, and nothing of
	// the new one's disturbed.
	var oldRounds atomic.Int64
	old := coord(100, &oldRounds)
	if err := old.Run(ctx); !errors.Is(err, group.ErrSuperseded) || old.Status().State != group.StateSuperseded {
		t.Fatalf("old leader back: %v, state %s; want superseded", err, old.Status().State)
	}
	if n := oldRounds.Load(); n != 0 {
		t.Fatalf("the superseded coordinator committed %d rounds", n)
	}
	bBefore := bRounds.Load()
	waitRounds("new leader after the old one came back", &bRounds, bBefore+20)

	// The control: a higher term wins, and the new leader stops.
	var cRounds atomic.Int64
	cctx, stopC := context.WithCancel(ctx)
	defer stopC()
	c := coord(300, &cRounds)
	cDone := make(chan error, 1)
	go func() { cDone <- c.Run(cctx) }()
	select {
	case err := <-bDone:
		if !errors.Is(err, group.ErrSuperseded) {
			t.Fatalf("coordinator of term 200 after one of term 300 started: %v, want superseded", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a coordinator of a higher term did not supersede the leader")
	}
	waitRounds("higher term", &cRounds, 20)
	stopC()
	if err := <-cDone; err != nil {
		t.Fatalf("coordinator of term 300: %v", err)
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.errs) > 0 || w.commits == 0 {
		t.Fatalf("%d releases checked; global commit violations %q", w.commits, w.errs)
	}
}
