// SPDX-License-Identifier: Apache-2.0

package checkpointer_test

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/resilire/resilire/checkpointer"
	"github.com/resilire/resilire/checkpointer/sim"

	"github.com/resilire/resilire/checkpointer/codec"
	"github.com/resilire/resilire/checkpointer/wire"
)

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
	return f.calls, checkpointer.TagsOf(f.frames)
}

// The backup keeps INPUT frames (also inside a checkpoint's DATA),
// prunes them on commit and replays the rest, in order, after failover.
func TestInputReplayFailover(t *testing.T) {
	for _, broken := range []bool{false, true} {
		t.Run(fmt.Sprintf("broken=%v", broken), func(t *testing.T) {
			inj := &fakeInjector{}
			replica := sim.NewReplica(testMem)
			sb := &fakeStandby{replica: replica}
			log, logs := testLogger(t)
			b, addr, _ := startBackup(t, checkpointer.BackupConfig{VM: "vm1", Replica: replica, Standby: sb, Codec: codec.Raw{},
				HeartbeatInterval: 20 * time.Millisecond, HeartbeatTimeout: 250 * time.Millisecond,
				Failover: checkpointer.FailoverConfig{UnsafeNoFence: true, Inject: inj}, Logger: log})
			tp := dialTestPrimary(t, addr, nil)
			commitFirst(t, tp)
			input := func(r wire.InputRecord) {
				if err := tp.l.Write(wire.Input, r.Marshal(nil), false); err != nil {
					t.Fatal(err)
				}
			}
			input(wire.InputRecord{Epoch: 1, Frame: checkpointer.FrameOf('a')})
			// Checkpoint 2 with an INPUT frame between BEGIN and DATA.
			m := wire.CheckpointMsg{Seq: 2, Epoch: 2, Kind: wire.Consistent}
			_ = tp.l.Write(wire.Begin, m.Marshal(), false)
			input(wire.InputRecord{Epoch: 2, Frame: checkpointer.FrameOf('b')})
			_, _ = wire.NewDataWriter(tp.l).Write(tp.encode(2, image(2), []byte("s2")))
			input(wire.InputRecord{Epoch: 2, Frame: checkpointer.FrameOf('c')})
			_ = tp.l.Write(wire.End, m.Marshal(), true)
			if typ, p := tp.answer(); typ != wire.Ack {
				t.Fatalf("checkpoint 2 answered %d %q", typ, p)
			}
			input(wire.InputRecord{Epoch: 3, Frame: checkpointer.FrameOf('d'), Broken: broken})
			input(wire.InputRecord{Epoch: 3, Frame: checkpointer.FrameOf('e')})
			tp.l.Flush()
			waitFor(t, 2*time.Second, "input kept", func() bool { return b.InputKept() == 4 })
			tp.conn.Close()
			waitFor(t, 5*time.Second, "failover", func() bool { return b.StateNow() == checkpointer.StateActive })
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
