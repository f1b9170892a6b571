// SPDX-License-Identifier: Apache-2.0

package checkpointer_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"errors"
	"net"
	"testing"
	"time"

	"github.com/resilire/resilire/checkpointer"
	"github.com/resilire/resilire/checkpointer/sim"

	"github.com/resilire/resilire/checkpointer/codec"
	"github.com/resilire/resilire/checkpointer/wire"
)

// testPrimary is a hand-driven primary: it speaks the protocol frame by
// frame so tests can cut, corrupt or replay anything.
type testPrimary struct {
	t     *testing.T
	conn  net.Conn
	l     *wire.Conn
	enc   codec.Encoder
	codec codec.Codec
}

// testCodecs are the codecs every protocol test runs with.
var testCodecs = []codec.Codec{codec.Raw{}, codec.DefaultFGBI()}

const testMem = 256 << 10 // 64 pages

func dialTestPrimary(t *testing.T, addr string, cfg *tls.Config) *testPrimary {
	return dialTestPrimaryCodec(t, addr, cfg, codec.Raw{})
}

func dialTestPrimaryCodec(t *testing.T, addr string, cfg *tls.Config, cdc codec.Codec) *testPrimary {
	t.Helper()
	var conn net.Conn
	var err error
	if cfg != nil {
		conn, err = tls.Dial("tcp", addr, cfg)
	} else {
		conn, err = net.Dial("tcp", addr)
	}
	if err != nil {
		t.Fatal(err)
	}
	tp := &testPrimary{t: t, conn: conn, l: wire.NewConn(conn, 2*time.Second), codec: cdc}
	if tp.enc, err = cdc.NewEncoder(testMem); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return tp
}

// hello opens the session; it returns the backup's answer type and payload.
func (tp *testPrimary) hello(vm string) (wire.Type, []byte) {
	h := wire.HelloMsg{MemSize: testMem, VM: vm, Codec: tp.codec.Name()}
	h.Session[0] = 1
	hp, err := h.Marshal()
	if err != nil {
		tp.t.Fatal(err)
	}
	if err := tp.l.Write(wire.Hello, hp, true); err != nil {
		tp.t.Fatal(err)
	}
	typ, p, err := tp.l.Read(2 * time.Second)
	if err != nil {
		return 0, []byte(err.Error())
	}
	return typ, p
}

// encode returns the raw checkpoint bytes for a full memory image.
func (tp *testPrimary) encode(epoch uint64, mem, state []byte) []byte {
	var buf bytes.Buffer
	if _, err := tp.enc.Encode(&buf, epoch, checkpointer.AllPages(nil, testMem/checkpointer.PageSize), mem, state); err != nil {
		tp.t.Fatal(err)
	}
	return buf.Bytes()
}

// sendRaw sends BEGIN, the first n bytes of body as DATA (all if n < 0),
// and END if end is set.
func (tp *testPrimary) sendRaw(seq, epoch uint64, kind wire.Kind, body []byte, n int, end bool) {
	m := wire.CheckpointMsg{Seq: seq, Epoch: epoch, Kind: kind}
	if n < 0 {
		n = len(body)
	}
	_ = tp.l.Write(wire.Begin, m.Marshal(), false)
	_, _ = wire.NewDataWriter(tp.l).Write(body[:n])
	if end {
		_ = tp.l.Write(wire.End, m.Marshal(), false)
	}
	tp.l.Flush()
}

// answer reads the backup's next non-heartbeat frame.
func (tp *testPrimary) answer() (wire.Type, string) {
	for {
		typ, p, err := tp.l.Read(3 * time.Second)
		if err != nil {
			return 0, err.Error()
		}
		if typ != wire.Heartbeat {
			return typ, string(p)
		}
	}
}

func image(seed byte) []byte {
	mem := make([]byte, testMem)
	for i := range mem {
		mem[i] = seed + byte(i*7)
	}
	return mem
}

func newTestBackup(t *testing.T, fence checkpointer.Fencer, ln net.Listener) (*checkpointer.Backup, string, *fakeStandby, *syncBuffer) {
	return newTestBackupCodec(t, fence, ln, codec.Raw{})
}

func newTestBackupCodec(t *testing.T, fence checkpointer.Fencer, ln net.Listener, codec codec.Codec) (*checkpointer.Backup, string, *fakeStandby, *syncBuffer) {
	return newTestBackupTimeout(t, fence, ln, codec, 250*time.Millisecond)
}

// newTestBackupTimeout is newTestBackupCodec with another heartbeat timeout.
func newTestBackupTimeout(t *testing.T, fence checkpointer.Fencer, ln net.Listener, codec codec.Codec, timeout time.Duration) (*checkpointer.Backup, string, *fakeStandby, *syncBuffer) {
	replica := sim.NewReplica(testMem)
	sb := &fakeStandby{replica: replica}
	log, buf := testLogger(t)
	b, addr, _ := startBackup(t, checkpointer.BackupConfig{VM: "vm1", Replica: replica, Standby: sb, Codec: codec,
		Listener: ln, HeartbeatInterval: 20 * time.Millisecond, HeartbeatTimeout: timeout,
		Failover: checkpointer.FailoverConfig{Fence: fence}, Logger: log})
	return b, addr, sb, buf
}

// commitFirst sends checkpoint 1 (image 1, state "s1") and expects its ACK.
func commitFirst(t *testing.T, tp *testPrimary) []byte {
	t.Helper()
	if typ, p := tp.hello("vm1"); typ != wire.HelloAck {
		t.Fatalf("hello answered %d %q", typ, p)
	}
	mem1 := image(1)
	tp.sendRaw(1, 1, wire.Consistent, tp.encode(1, mem1, []byte("s1")), -1, true)
	if typ, p := tp.answer(); typ != wire.Ack {
		t.Fatalf("checkpoint 1 answered %d %q", typ, p)
	}
	return mem1
}

// Kill the stream at every phase of checkpoint 2. Before END the backup
// must keep checkpoint 1 byte for byte and fail over from it; after END
// (before the ACK reached the primary) it holds checkpoint 2 whole, which
// is equally consistent: the primary released nothing of epoch 2.
func TestKillStreamAtEveryPhase(t *testing.T) {
	mem2 := image(2)
	for _, tc := range []struct {
		name      string
		cut       func(body []byte) (n int, end bool)
		wantEpoch uint64
	}{
		{"header", func([]byte) (int, bool) { return 10, false }, 1},
		{"mid-record", func(b []byte) (int, bool) { return len(b) / 2, false }, 1},
		{"before-trailer", func(b []byte) (int, bool) { return len(b) - 2, false }, 1},
		{"before-END", func(b []byte) (int, bool) { return len(b), false }, 1},
		{"after-END-before-ACK", func(b []byte) (int, bool) { return len(b), true }, 2},
	} {
		for _, codec := range testCodecs {
			t.Run(codec.Name()+"/"+tc.name, func(t *testing.T) {
				t.Parallel()
				// No watchdog (a heartbeat timeout far beyond the test): the
				// backup first consumes everything the connection held, then
				// fails over on request. A timed failover could overtake the
				// decode of a complete checkpoint 2 on a loaded machine; that
				// would resume from epoch 1, consistent too, but not what this
				// case checks. Timed failover has its own tests (TestFencing).
				b, addr, sb, _ := newTestBackupTimeout(t, checkpointer.CommandFencer{Command: "true"}, nil, codec, time.Minute)
				tp := dialTestPrimaryCodec(t, addr, nil, codec)
				mem1 := commitFirst(t, tp)
				body := tp.encode(2, mem2, []byte("s2"))
				n, end := tc.cut(body)
				tp.sendRaw(2, 2, wire.Consistent, body, n, end)
				tp.conn.Close()
				waitFor(t, 10*time.Second, "session end", b.SessionEnded)
				if err := b.FailoverNow(context.Background()); err != nil {
					t.Fatal(err)
				}
				if ok, _, _, _ := sb.get(); !ok {
					t.Fatal("not activated")
				}
				want, wantState := mem1, "s1"
				if tc.wantEpoch == 2 {
					want, wantState = mem2, "s2"
				}
				if got, _ := b.Committed(); got != tc.wantEpoch {
					t.Fatalf("committed epoch %d, want %d", got, tc.wantEpoch)
				}
				_, st, h, _ := sb.get()
				if h != sha256.Sum256(want) || string(st) != wantState {
					t.Fatalf("resumed from state %q / wrong memory, want epoch %d", st, tc.wantEpoch)
				}
			})
		}
	}
}

// A corrupt byte, a replayed or old checkpoint, a skipped sequence number,
// a wrong VM: refused, logged, nothing applied.
func TestRefusesBadCheckpoints(t *testing.T) {
	mem2 := image(2)
	for _, tc := range []struct {
		name string
		send func(tp *testPrimary)
		want string
	}{
		{"corrupt-byte", func(tp *testPrimary) {
			body := tp.encode(2, mem2, nil)
			body[len(body)/3] ^= 0x40
			tp.sendRaw(2, 2, wire.Consistent, body, -1, true)
		}, "corrupt checkpoint"},
		{"replayed-epoch", func(tp *testPrimary) {
			tp.sendRaw(2, 1, wire.Consistent, tp.encode(1, mem2, nil), -1, true)
		}, "old or replayed"},
		{"replayed-seq", func(tp *testPrimary) {
			tp.sendRaw(1, 2, wire.Consistent, tp.encode(2, mem2, nil), -1, true)
		}, "old or replayed"},
		{"epoch-mismatch", func(tp *testPrimary) {
			tp.sendRaw(2, 3, wire.Consistent, tp.encode(2, mem2, nil), -1, true)
		}, "corrupt checkpoint"},
		{"precopy-over-committed", func(tp *testPrimary) {
			tp.sendRaw(2, 0, wire.Precopy, tp.encode(0, mem2, nil), -1, true)
		}, "session refused"},
		{"garbage-frame", func(tp *testPrimary) {
			_, _ = tp.conn.Write([]byte{99, 0, 0, 0, 1, 0, 0, 0, 0})
		}, "bad frame"},
	} {
		for _, codec := range testCodecs {
			t.Run(codec.Name()+"/"+tc.name, func(t *testing.T) {
				b, addr, _, log := newTestBackupCodec(t, nil, nil, codec)
				tp := dialTestPrimaryCodec(t, addr, nil, codec)
				mem1 := commitFirst(t, tp)
				tc.send(tp)
				if typ, msg := tp.answer(); typ != wire.Error {
					t.Fatalf("answer %d %q, want a refusal", typ, msg)
				}
				waitFor(t, 2*time.Second, "log", func() bool { return bytes.Contains([]byte(log.String()), []byte(tc.want)) })
				mustContain(t, log.String(), "refused primary")
				if got, _ := b.Committed(); got != 1 || b.ReplicaHash() != sha256.Sum256(mem1) {
					t.Fatalf("something was applied: committed %d", got)
				}
			})
		}
	}
	t.Run("wrong-vm", func(t *testing.T) {
		_, addr, _, log := newTestBackup(t, nil, nil)
		tp := dialTestPrimary(t, addr, nil)
		if typ, p := tp.hello("other"); typ != wire.Error {
			t.Fatalf("hello for another vm answered %d %q", typ, p)
		}
		mustContain(t, log.String(), "session refused")
	})
}

// No fence command: the backup refuses to go live. A failing fence: it
// never activates. A succeeding one: activation comes after it ran.
func TestFencing(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		name      string
		fence     checkpointer.Fencer
		activates bool
	}{
		{"no-fence", nil, false},
		{"fence-fails", checkpointer.CommandFencer{Command: "exit 3"}, false},
		{"fence-ok", checkpointer.CommandFencer{Command: `echo "$RESILIRE_VM $RESILIRE_EPOCH $RESILIRE_REASON $RESILIRE_PEER" > ` + dir + "/fenced"}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b, addr, sb, log := newTestBackup(t, tc.fence, nil)
			sb.before = func() error { return checkFenced(dir, tc.activates) }
			tp := dialTestPrimary(t, addr, nil)
			commitFirst(t, tp)
			tp.conn.Close() // heartbeats stop
			if !tc.activates {
				waitFor(t, 3*time.Second, "fence-failed", func() bool { return b.StateNow() == checkpointer.StateFenceFailed })
				time.Sleep(500 * time.Millisecond) // two more timeouts
				if ok, _, _, _ := sb.get(); ok {
					t.Fatal("activated without a successful fence")
				}
				mustContain(t, log.String(), "staying passive")
				return
			}
			select {
			case <-b.Activated():
			case <-time.After(3 * time.Second):
				t.Fatalf("no failover; log:\n%s", log.String())
			}
			if _, _, _, err := sb.get(); err != nil {
				t.Fatal(err)
			}
			if b.Status().State != checkpointer.StateActive {
				t.Fatalf("state %s", b.Status().State)
			}
		})
	}
}

func checkFenced(dir string, want bool) error {
	got, err := readFileString(dir + "/fenced")
	if !want {
		return nil
	}
	if err != nil {
		return err
	}
	if got != "vm1 1 heartbeat-timeout 127.0.0.1\n" {
		return &fenceEnvError{got}
	}
	return nil
}

type fenceEnvError struct{ got string }

func (e *fenceEnvError) Error() string { return "fence command saw env " + e.got }

// The unsafe flag goes live without fencing.
func TestUnsafeNoFence(t *testing.T) {
	replica := sim.NewReplica(testMem)
	sb := &fakeStandby{replica: replica}
	b, addr, _ := startBackup(t, checkpointer.BackupConfig{VM: "vm1", Replica: replica, Standby: sb, Codec: codec.Raw{},
		HeartbeatTimeout: 200 * time.Millisecond, Failover: checkpointer.FailoverConfig{UnsafeNoFence: true}})
	tp := dialTestPrimary(t, addr, nil)
	commitFirst(t, tp)
	tp.conn.Close()
	select {
	case <-b.Activated():
	case <-time.After(3 * time.Second):
		t.Fatal("no failover with --unsafe-no-fence")
	}
}

// A primary whose epochs are behind what the backup holds stops with a
// clear error instead of being refused forever.
func TestPrimaryBehindBackupIsFatal(t *testing.T) {
	dom := sim.NewDomain(sim.Config{Name: "vm1", MemSize: testMem, Seed: 1})
	_, addr, _, _ := newTestBackup(t, nil, nil)
	commitFirst(t, dialTestPrimary(t, addr, nil)) // backup now holds epoch 1
	p, err := checkpointer.NewPrimary(checkpointer.PrimaryConfig{Domain: dom, Output: checkpointer.NewEpochCounterAt(1), Codec: codec.Raw{}, Dial: dialer(addr),
		Interval: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := p.Run(ctx); !errors.Is(err, checkpointer.ErrEpochBehind) {
		t.Fatalf("Run: %v, want checkpointer.ErrEpochBehind", err)
	}
}

// One writer at a time: a newer session replaces the older one, whose
// connection is closed; nothing the old primary sends afterwards applies.
func TestNewerSessionWins(t *testing.T) {
	b, addr, _, _ := newTestBackup(t, nil, nil)
	old := dialTestPrimary(t, addr, nil)
	commitFirst(t, old)
	fresh := dialTestPrimary(t, addr, nil)
	if typ, p := fresh.hello("vm1"); typ != wire.HelloAck {
		t.Fatalf("second session refused: %q", p)
	}
	mem2 := image(2)
	old.sendRaw(2, 2, wire.Consistent, old.encode(2, mem2, nil), -1, true)
	if typ, _ := old.answer(); typ == wire.Ack {
		t.Fatal("the replaced session's checkpoint was acknowledged")
	}
	if got, _ := b.Committed(); got != 1 || b.ReplicaHash() != sha256.Sum256(image(1)) {
		t.Fatalf("replaced session applied: committed %d", got)
	}
	mem3 := image(3)
	fresh.sendRaw(1, 3, wire.Consistent, fresh.encode(3, mem3, nil), -1, true)
	if typ, p := fresh.answer(); typ != wire.Ack {
		t.Fatalf("new session's checkpoint answered %d %q", typ, p)
	}
	if got, _ := b.Committed(); got != 3 || b.ReplicaHash() != sha256.Sum256(mem3) {
		t.Fatalf("committed %d after the new session's checkpoint", got)
	}
}
