// SPDX-License-Identifier: Apache-2.0

package checkpointer_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/resilire/resilire/checkpointer"
	"github.com/resilire/resilire/checkpointer/sim"

	"github.com/resilire/resilire/checkpointer/codec"
	"github.com/resilire/resilire/checkpointer/wire"
)

// recOutput is the fake output buffer: it numbers epochs, remembers the
// primary's memory hash at each Advance (the guest is paused then) and, at
// each Release(e), checks invariant 1 and the replica: the backup must
// already have committed e, and its replica must equal the memory at e.
// hashedDomain is a test guest whose memory can be hashed while paused.
type hashedDomain interface {
	Hash() [32]byte
	Paused() bool
}

type recOutput struct {
	dom    hashedDomain
	backup func() *checkpointer.Backup
	// unprotected, if set, says a Release is an unprotected one (continue
	// policy, no backup): it is then not checked against the backup.
	unprotected func() bool

	mu       sync.Mutex
	next     uint64
	hashes   map[uint64][32]byte
	released uint64
	checked  int
	discards int
	errs     []string
}

func newRecOutput(dom hashedDomain, backup func() *checkpointer.Backup) *recOutput {
	return &recOutput{dom: dom, backup: backup, next: 1, hashes: map[uint64][32]byte{}}
}

func (o *recOutput) Advance() (uint64, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if !o.dom.Paused() {
		o.errs = append(o.errs, fmt.Sprintf("Advance of epoch %d with the guest running", o.next))
	}
	e := o.next
	o.next++
	o.hashes[e] = o.dom.Hash()
	return e, nil
}

func (o *recOutput) Release(e uint64) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	if e <= o.released || e >= o.next {
		o.errs = append(o.errs, fmt.Sprintf("Release(%d) after Release(%d), next %d", e, o.released, o.next))
	}
	if b := o.backup(); b != nil && (o.unprotected == nil || !o.unprotected()) {
		if committed, _ := b.Committed(); committed < e {
			o.errs = append(o.errs, fmt.Sprintf("Release(%d) before ACK: backup committed %d", e, committed))
		}
		if b.ReplicaHash() != o.hashes[e] {
			o.errs = append(o.errs, fmt.Sprintf("replica differs from the primary at epoch %d", e))
		}
	}
	o.released = e
	o.checked++
	return nil
}

func (o *recOutput) Discard() error {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.discards++
	return nil
}

func (o *recOutput) snapshot() (checked int, released uint64, errs []string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.checked, o.released, append([]string(nil), o.errs...)
}

func (o *recOutput) hashAt(e uint64) [32]byte {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.hashes[e]
}

// slowCodec delays every decode: ACKs come late.
type slowCodec struct {
	codec.Raw
	delay time.Duration
}

type slowDecoder struct {
	codec.Decoder
	delay time.Duration
}

func (c slowCodec) NewDecoder(memSize uint64) (codec.Decoder, error) {
	d, err := c.Raw.NewDecoder(memSize)
	return slowDecoder{d, c.delay}, err
}

func (d slowDecoder) Decode(r io.Reader, replica []byte) (codec.Staged, error) {
	s, err := d.Decoder.Decode(r, replica)
	time.Sleep(d.delay)
	return s, err
}

func dialer(addr string) func(context.Context) (net.Conn, error) {
	d, _ := wire.Dialer(addr, wire.TLSFiles{}, time.Second)
	return d
}

// runPair protects a busy simulated guest over loopback TCP until want
// epochs were released, then stops the primary.
func runPair(t *testing.T, codec codec.Codec, interval time.Duration, want int, pipeline bool) (*recOutput, *checkpointer.Backup, *fakeStandby) {
	t.Helper()
	dom := sim.NewDomain(sim.Config{Name: "vm1", MemSize: 4 << 20, Seed: 7, WritesPerMs: 100, HotPages: 512})
	dom.Start()
	t.Cleanup(dom.Stop)
	replica := sim.NewReplica(dom.MemorySize())
	sb := &fakeStandby{replica: replica}
	log, _ := testLogger(t)
	b, addr, _ := startBackup(t, checkpointer.BackupConfig{VM: "vm1", Replica: replica, Standby: sb, Codec: codec,
		HeartbeatInterval: 20 * time.Millisecond, HeartbeatTimeout: 300 * time.Millisecond,
		Failover: checkpointer.FailoverConfig{Fence: checkpointer.CommandFencer{Command: "true"}}, Logger: log})
	out := newRecOutput(dom, func() *checkpointer.Backup { return b })
	var progress []uint64
	p, err := checkpointer.NewPrimary(checkpointer.PrimaryConfig{Domain: dom, Output: out, Codec: codec, Dial: dialer(addr),
		Interval: interval, HeartbeatInterval: 20 * time.Millisecond, HeartbeatTimeout: 300 * time.Millisecond,
		PrecopyStopPages: 64, Pipeline: pipeline, Progress: func(done, _ uint64) { progress = append(progress, done) }, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- p.Run(ctx) }()
	waitFor(t, 20*time.Second, fmt.Sprintf("%d released epochs", want), func() bool {
		n, _, _ := out.snapshot()
		return n >= want
	})
	cancel()
	if err := recvWithin(t, errc, 20*time.Second, "primary"); err != nil {
		t.Fatalf("primary: %v", err)
	}
	if len(progress) == 0 || progress[len(progress)-1] != dom.MemorySize()/checkpointer.PageSize {
		t.Errorf("progress %v never reached every page", progress)
	}
	if st := p.Status(); st.State != checkpointer.StateStopped || st.Epoch == 0 {
		t.Errorf("primary status %+v", st)
	}
	return out, b, sb
}

// After every acked epoch the replica equals the primary's memory at that
// epoch's pause; when the primary stops, the backup fails over to the last
// committed checkpoint.
func TestReplicaMatchesEveryAckedEpoch(t *testing.T) {
	for _, codec := range testCodecs {
		for _, pipe := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/pipeline=%v", codec.Name(), pipe), func(t *testing.T) { testReplicaMatches(t, codec, pipe) })
		}
	}
}

func testReplicaMatches(t *testing.T, codec codec.Codec, pipeline bool) {
	out, b, sb := runPair(t, codec, 10*time.Millisecond, 15, pipeline)
	checked, released, errs := out.snapshot()
	for _, e := range errs {
		t.Error(e)
	}
	t.Logf("%d epochs checked, last released %d", checked, released)
	waitFor(t, 5*time.Second, "failover", func() bool { ok, _, _, _ := sb.get(); return ok })
	committed, state := b.Committed()
	if committed < released {
		t.Fatalf("backup committed %d < released %d", committed, released)
	}
	_, st, memHash, _ := sb.get()
	if memHash != out.hashAt(committed) {
		t.Errorf("activated replica differs from the primary at epoch %d", committed)
	}
	if string(st) != string(state) || len(st) != 16 {
		t.Errorf("activated with state %x, committed %x", st, state)
	}
}

// Late ACKs: Release(e) must still wait for ACK e (recOutput checks the
// backup's committed epoch at every Release).
func TestDelayedAcksHoldRelease(t *testing.T) {
	for _, pipe := range []bool{false, true} {
		t.Run(fmt.Sprintf("pipeline=%v", pipe), func(t *testing.T) {
			out, _, _ := runPair(t, slowCodec{delay: 30 * time.Millisecond}, 5*time.Millisecond, 6, pipe)
			_, _, errs := out.snapshot()
			for _, e := range errs {
				t.Error(e)
			}
		})
	}
}

// The checker itself must be able to fail: a primary that released
// before the ACK is caught.
func TestRecOutputCatchesEarlyRelease(t *testing.T) {
	dom := sim.NewDomain(sim.Config{Name: "vm1", MemSize: 64 << 10, Seed: 1})
	replica := sim.NewReplica(dom.MemorySize())
	b, err := checkpointer.NewBackup(checkpointer.BackupConfig{VM: "vm1", Replica: replica, Standby: &fakeStandby{replica: replica},
		Codec: codec.Raw{}, Listener: nopListener{}})
	if err != nil {
		t.Fatal(err)
	}
	out := newRecOutput(dom, func() *checkpointer.Backup { return b })
	_ = dom.Pause(context.Background())
	e, _ := out.Advance()
	_ = out.Release(e)
	if _, _, errs := out.snapshot(); len(errs) == 0 {
		t.Fatal("early release not detected")
	}
}

type nopListener struct{}

func (nopListener) Accept() (net.Conn, error) { return nil, net.ErrClosed }
func (nopListener) Close() error              { return nil }
func (nopListener) Addr() net.Addr            { return &net.TCPAddr{} }
