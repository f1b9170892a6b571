// SPDX-License-Identifier: Apache-2.0

package checkpointer

import (
	"bytes"
	"context"
	"errors"
	"testing"
	"time"

	"github.com/resilire/resilire/checkpointer/wire"
)

func frameOf(tag byte) []byte { return bytes.Repeat([]byte{tag}, 60) }

func tagsOf(frames [][]byte) string {
	var s []byte
	for _, f := range frames {
		s = append(s, f[0])
	}
	return string(s)
}

func TestInputKeeper(t *testing.T) {
	rec := func(e uint64, tag byte) wire.InputRecord { return wire.InputRecord{Epoch: e, Frame: frameOf(tag)} }
	t.Run("prune keeps the boundary epoch", func(t *testing.T) {
		k := newInputKeeper(0)
		k.add(rec(1, 'a'), 1)
		k.add(rec(2, 'b'), 1)
		k.add(rec(3, 'c'), 1)
		k.commit(2)
		if got := tagsOf(k.take(2, 0)); got != "bc" {
			t.Fatalf("after commit 2 replay %q, want bc", got)
		}
		k.add(rec(1, 'z'), 2) // older than committed: never kept
		if got := tagsOf(k.take(2, 0)); got != "bc" {
			t.Fatalf("stale frame kept: %q", got)
		}
	})
	t.Run("broken epoch stops replay until a later commit", func(t *testing.T) {
		k := newInputKeeper(0)
		k.add(rec(2, 'a'), 2)
		k.add(wire.InputRecord{Epoch: 3, Broken: true}, 2)
		k.add(rec(3, 'b'), 2)
		k.add(rec(4, 'c'), 2)
		if got := tagsOf(k.take(2, 0)); got != "a" {
			t.Fatalf("broken from 3: replay %q, want a", got)
		}
		k.commit(3) // frames stamped 3 still replay: still broken
		if got := tagsOf(k.take(3, 0)); got != "" {
			t.Fatalf("commit 3, broken 3: replay %q, want nothing", got)
		}
		k.commit(4)
		if got := tagsOf(k.take(4, 0)); got != "c" {
			t.Fatalf("commit 4 clears broken 3: replay %q, want c", got)
		}
	})
	t.Run("byte bound drops oldest and marks broken", func(t *testing.T) {
		k := newInputKeeper(150) // two 60-byte frames fit
		k.add(rec(5, 'a'), 5)
		k.add(rec(5, 'b'), 5)
		k.add(rec(6, 'c'), 5)
		if k.bytes > 150 || len(k.recs) != 2 {
			t.Fatalf("kept %d frames, %d bytes over bound 150", len(k.recs), k.bytes)
		}
		if got := tagsOf(k.take(5, 0)); got != "" {
			t.Fatalf("epoch 5 lost a frame: replay %q, want nothing", got)
		}
		k.commit(6)
		if got := tagsOf(k.take(6, 0)); got != "c" {
			t.Fatalf("after commit 6 replay %q, want c", got)
		}
	})
	t.Run("new session is broken until the next commit", func(t *testing.T) {
		k := newInputKeeper(0)
		k.add(rec(7, 'a'), 7)
		k.reset(7, 7)
		k.add(rec(7, 'b'), 7)
		if got := tagsOf(k.take(7, 0)); got != "" {
			t.Fatalf("after reset replay %q, want nothing", got)
		}
		k.add(rec(8, 'c'), 7)
		k.commit(8)
		if got := tagsOf(k.take(8, 0)); got != "c" {
			t.Fatalf("after reset and commit 8 replay %q, want c", got)
		}
	})
	t.Run("a group backup keeps the frames it may roll back over", func(t *testing.T) {
		k := newInputKeeper(0)
		k.add(rec(6, 'a'), 6)
		k.add(rec(7, 'b'), 6)
		k.add(rec(8, 'c'), 6)
		k.reset(6, 8) // committed 8, can still undo to 6
		if got := tagsOf(k.take(6, 0)); got != "ab" {
			t.Fatalf("rollback to 6 after reset replays %q, want ab (8 is broken: the session ended in it)", got)
		}
		k.reset(8, 8)
		if got := tagsOf(k.take(6, 0)); got != "" {
			t.Fatalf("after reset(8, 8) replay %q, want nothing", got)
		}
	})
}

// After a group's rollback to round R, frames from other members are
// replayed only if sent in round R or before (in transit across the cut),
// across the 4095 -> 0 wrap too; external frames always.
func TestInputKeeperGroupColours(t *testing.T) {
	for _, tc := range []struct {
		round uint64
		want  string
	}{{7, "xab"}, {8, "xabc"}, {4096 + 7, "xab"}, {0, "xabcd"}} {
		k := newInputKeeper(0)
		for _, r := range []wire.InputRecord{
			{Epoch: 5, Frame: frameOf('x')},
			{Epoch: 5, Internal: true, Colour: 6, Frame: frameOf('a')},
			{Epoch: 6, Internal: true, Colour: 7, Frame: frameOf('b')},
			{Epoch: 6, Internal: true, Colour: 8, Frame: frameOf('c')},
			{Epoch: 6, Internal: true, Colour: 9, Frame: frameOf('d')},
		} {
			if tc.round > 4095 {
				r.Colour = uint16((uint64(r.Colour) + 4096) & wire.MaxColour)
			}
			k.add(r, 5)
		}
		if got := tagsOf(k.take(5, tc.round)); got != tc.want {
			t.Errorf("rollback to round %d replays %q, want %q", tc.round, got, tc.want)
		}
	}
}

// flusherFunc is a test double of the data plane's input reader.
type flusherFunc func() error

func (f flusherFunc) Flush() error { return f() }

// The epoch loop's barrier: sync returns only once every record the
// reader offered before its Flushed is written by the session (handled),
// and fails at its deadline when the reader never answers.
func TestInputQueueSync(t *testing.T) {
	q := NewInputQueue(8)
	if err := q.sync(context.Background()); err != nil {
		t.Fatalf("sync without a flusher: %v", err)
	}
	q.SetFlusher(flusherFunc(func() error {
		go func() {
			q.OfferInput(3, false, []byte{1})
			q.OfferInput(3, false, []byte{2})
			q.Flushed()
		}()
		return nil
	}))
	done := make(chan error, 1)
	go func() { done <- q.sync(context.Background()) }()
	for i := range 2 {
		<-q.ch
		select {
		case err := <-done:
			t.Fatalf("sync returned (%v) with %d of 2 records written", err, i)
		case <-time.After(50 * time.Millisecond):
		}
		q.handle(1)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("sync still waiting with every record written")
	}

	q.SetFlusher(flusherFunc(func() error { return nil })) // never answers
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := q.sync(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("sync with a silent reader: %v, want a deadline error", err)
	}
}
