// SPDX-License-Identifier: Apache-2.0

package checkpointer

import (
	"bytes"
	"fmt"
	"sync"
	"testing"
	"time"
)

// frameOf is a distinguishable Ethernet-sized test frame.
func frameOf(tag byte) []byte { return bytes.Repeat([]byte{tag}, 60) }

func tagsOf(frames [][]byte) string {
	var s []byte
	for _, f := range frames {
		s = append(s, f[0])
	}
	return string(s)
}

func TestInputKeeper(t *testing.T) {
	rec := func(e uint64, tag byte) InputRecord { return InputRecord{Epoch: e, Frame: frameOf(tag)} }
	t.Run("prune keeps the boundary epoch", func(t *testing.T) {
		k := newInputKeeper(0)
		k.add(rec(1, 'a'), 1)
		k.add(rec(2, 'b'), 1)
		k.add(rec(3, 'c'), 1)
		k.commit(2)
		if got := tagsOf(k.take(2)); got != "bc" {
			t.Fatalf("after commit 2 replay %q, want bc", got)
		}
		k.add(rec(1, 'z'), 2) // older than committed: never kept
		if got := tagsOf(k.take(2)); got != "bc" {
			t.Fatalf("stale frame kept: %q", got)
		}
	})
	t.Run("broken epoch stops replay until a later commit", func(t *testing.T) {
		k := newInputKeeper(0)
		k.add(rec(2, 'a'), 2)
		k.add(InputRecord{Epoch: 3, Broken: true}, 2)
		k.add(rec(3, 'b'), 2)
		k.add(rec(4, 'c'), 2)
		if got := tagsOf(k.take(2)); got != "a" {
			t.Fatalf("broken from 3: replay %q, want a", got)
		}
		k.commit(3) // frames stamped 3 still replay: still broken
		if got := tagsOf(k.take(3)); got != "" {
			t.Fatalf("commit 3, broken 3: replay %q, want nothing", got)
		}
		k.commit(4)
		if got := tagsOf(k.take(4)); got != "c" {
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
		if got := tagsOf(k.take(5)); got != "" {
			t.Fatalf("epoch 5 lost a frame: replay %q, want nothing", got)
		}
		k.commit(6)
		if got := tagsOf(k.take(6)); got != "c" {
			t.Fatalf("after commit 6 replay %q, want c", got)
		}
	})
	t.Run("new session is broken until the next commit", func(t *testing.T) {
		k := newInputKeeper(0)
		k.add(rec(7, 'a'), 7)
		k.reset(7)
		k.add(rec(7, 'b'), 7)
		if got := tagsOf(k.take(7)); got != "" {
			t.Fatalf("after reset replay %q, want nothing", got)
		}
		k.add(rec(8, 'c'), 7)
		k.commit(8)
		if got := tagsOf(k.take(8)); got != "c" {
			t.Fatalf("after reset and commit 8 replay %q, want c", got)
		}
	})
}

// fakeInjector records the frames a failover replays.
type fakeInjector struct {
	mu     sync.Mutex
	frames [][]byte
	calls  int
}

func (f *fakeInjector) Inject(frames [][]byte) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls++
	f.frames = append(f.frames, frames...)
	return len(frames), nil
}

func (f *fakeInjector) get() (int, string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls, tagsOf(f.frames)
}

// The backup keeps INPUT frames (also inside a checkpoint's DATA),
// prunes them on commit and replays the rest, in order, after failover.
func TestInputReplayFailover(t *testing.T) {
	for _, broken := range []bool{false, true} {
		t.Run(fmt.Sprintf("broken=%v", broken), func(t *testing.T) {
			inj := &fakeInjector{}
			replica := NewSimReplica(testMem)
			sb := &fakeStandby{replica: replica}
			log, logs := testLogger(t)
			b, addr, _ := startBackup(t, BackupConfig{VM: "vm1", Replica: replica, Standby: sb, Codec: RawCodec{},
				HeartbeatInterval: 20 * time.Millisecond, HeartbeatTimeout: 250 * time.Millisecond,
				Failover: FailoverConfig{UnsafeNoFence: true, Inject: inj}, Logger: log})
			tp := dialTestPrimary(t, addr, nil)
			commitFirst(t, tp)
			input := func(r InputRecord) {
				if err := tp.l.write(frameInput, r.marshal(nil), false); err != nil {
					t.Fatal(err)
				}
			}
			input(InputRecord{Epoch: 1, Frame: frameOf('a')})
			// Checkpoint 2 with an INPUT frame between BEGIN and DATA.
			m := ckptMsg{Seq: 2, Epoch: 2, Kind: kindEpoch}
			tp.l.write(frameBegin, m.marshal(), false)
			input(InputRecord{Epoch: 2, Frame: frameOf('b')})
			(&dataWriter{l: tp.l}).Write(tp.encode(2, image(2), []byte("s2")))
			input(InputRecord{Epoch: 2, Frame: frameOf('c')})
			tp.l.write(frameEnd, m.marshal(), true)
			if typ, p := tp.answer(); typ != frameAck {
				t.Fatalf("checkpoint 2 answered %d %q", typ, p)
			}
			input(InputRecord{Epoch: 3, Frame: frameOf('d'), Broken: broken})
			input(InputRecord{Epoch: 3, Frame: frameOf('e')})
			tp.l.w.Flush()
			waitFor(t, 2*time.Second, "input kept", func() bool { b.input.mu.Lock(); defer b.input.mu.Unlock(); return len(b.input.recs) == 4 })
			tp.conn.Close()
			waitFor(t, 5*time.Second, "failover", func() bool { return b.stateNow() == StateActive })
			waitFor(t, 2*time.Second, "replay", func() bool { n, _ := inj.get(); return n == 1 })
			want := "bcde"
			if broken {
				want = "bc"
			}
			if _, got := inj.get(); got != want {
				t.Fatalf("replayed %q, want %q", got, want)
			}
			mustContain(t, logs.String(), "input log replayed")
		})
	}
}

// FuzzInput feeds arbitrary INPUT payloads to the decoder: it must never
// panic, and whatever it accepts round trips.
func FuzzInput(f *testing.F) {
	f.Add(InputRecord{Epoch: 3, Frame: frameOf('x')}.marshal(nil))
	f.Add(InputRecord{Epoch: 9, Broken: true}.marshal(nil))
	f.Add([]byte{1, 2, 3})
	f.Fuzz(func(t *testing.T, p []byte) {
		r, err := parseInput(p)
		if err != nil {
			return
		}
		if len(r.Frame) > maxInputFrame || (len(r.Frame) == 0 && !r.Broken) {
			t.Fatalf("accepted frame of %d bytes (broken %v)", len(r.Frame), r.Broken)
		}
		if !bytes.Equal(r.marshal(nil), p) {
			t.Fatalf("input record does not round trip")
		}
	})
}
