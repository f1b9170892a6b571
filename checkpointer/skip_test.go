// SPDX-License-Identifier: Apache-2.0

package checkpointer_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/resilire/resilire/checkpointer"
	"github.com/resilire/resilire/checkpointer/codec"
	"github.com/resilire/resilire/checkpointer/sim"
)

// refusingDomain refuses the next `refuse` pauses the way the Xen driver
// does when a guest does not suspend in time: the guest runs on, untouched.
type refusingDomain struct {
	*sim.Domain
	refuse  atomic.Int32
	refused atomic.Int32
}

func (d *refusingDomain) Pause(ctx context.Context) error {
	if d.refuse.Add(-1) >= 0 {
		d.refused.Add(1)
		return fmt.Errorf("guest did not suspend in time: %w", checkpointer.ErrPauseRefused)
	}
	d.refuse.Store(0)
	return d.Domain.Pause(ctx)
}

// A refused pause skips the epoch: nothing is advanced, captured or
// released (recOutput checks every release against the backup's replica
// and that Advance only runs with the guest paused), protection goes on,
// and one refusal more than MaxSkippedEpochs in a row stops the agent.
func TestRefusedPauseSkipsEpoch(t *testing.T) {
	for _, pipe := range []bool{false, true} {
		t.Run(fmt.Sprintf("pipeline=%v", pipe), func(t *testing.T) { testRefusedPause(t, pipe) })
	}
}

func testRefusedPause(t *testing.T, pipeline bool) {
	dom := &refusingDomain{Domain: sim.NewDomain(sim.Config{Name: "vm1", MemSize: 4 << 20, Seed: 7, WritesPerMs: 100, HotPages: 512})}
	dom.Start()
	t.Cleanup(dom.Stop)
	replica := sim.NewReplica(dom.MemorySize())
	log, logs := testLogger(t)
	b, addr, _ := startBackup(t, checkpointer.BackupConfig{VM: "vm1", Replica: replica, Standby: &fakeStandby{replica: replica},
		Codec: codec.Raw{}, HeartbeatInterval: 20 * time.Millisecond, HeartbeatTimeout: 300 * time.Millisecond,
		Failover: checkpointer.FailoverConfig{Fence: checkpointer.CommandFencer{Command: "true"}}, Logger: log})
	out := newRecOutput(dom, func() *checkpointer.Backup { return b })
	p, err := checkpointer.NewPrimary(checkpointer.PrimaryConfig{Domain: dom, Output: out, Codec: codec.Raw{}, Dial: dialer(addr),
		Interval: 10 * time.Millisecond, HeartbeatInterval: 20 * time.Millisecond, HeartbeatTimeout: 300 * time.Millisecond,
		PrecopyStopPages: 64, Pipeline: pipeline, MaxSkippedEpochs: 3, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	errc := make(chan error, 1)
	go func() { errc <- p.Run(ctx) }()
	released := func(n int) func() bool {
		return func() bool { c, _, _ := out.snapshot(); return c >= n }
	}
	waitFor(t, 20*time.Second, "3 released epochs", released(3))

	// Three refusals in a row are within the bound: skipped, then on.
	dom.refuse.Store(3)
	c0, r0, _ := out.snapshot()
	waitFor(t, 20*time.Second, "epochs after the skipped ones", released(c0+3))
	if got := dom.refused.Load(); got != 3 {
		t.Fatalf("%d pauses refused, want 3", got)
	}
	if _, r1, _ := out.snapshot(); r1 < r0+3 {
		t.Fatalf("released %d after %d: protection did not go on", r1, r0)
	}
	if st := p.Status(); st.State != checkpointer.StateProtected {
		t.Fatalf("state %q after skipped epochs", st.State)
	}
	mustContain(t, logs.String(), "epoch skipped")

	// A fourth in a row is one too many: the agent stops, output held.
	dom.refuse.Store(4)
	err = recvWithin(t, errc, 20*time.Second, "primary")
	if !errors.Is(err, checkpointer.ErrPauseRefused) || !strings.Contains(err.Error(), "after 3 epochs skipped in a row") {
		t.Fatalf("primary after 4 refusals in a row: %v", err)
	}
	_, _, errs := out.snapshot()
	for _, e := range errs {
		t.Error(e)
	}
}

// Without MaxSkippedEpochs, the first refusal is fatal, as before.
func TestRefusedPauseFatalByDefault(t *testing.T) {
	dom := &refusingDomain{Domain: sim.NewDomain(sim.Config{Name: "vm1", MemSize: 1 << 20, Seed: 7})}
	replica := sim.NewReplica(dom.MemorySize())
	log, _ := testLogger(t)
	b, addr, _ := startBackup(t, checkpointer.BackupConfig{VM: "vm1", Replica: replica, Standby: &fakeStandby{replica: replica},
		Codec: codec.Raw{}, Failover: checkpointer.FailoverConfig{Fence: checkpointer.CommandFencer{Command: "true"}}, Logger: log})
	out := newRecOutput(dom, func() *checkpointer.Backup { return b })
	p, err := checkpointer.NewPrimary(checkpointer.PrimaryConfig{Domain: dom, Output: out, Codec: codec.Raw{}, Dial: dialer(addr),
		Interval: 10 * time.Millisecond, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	dom.refuse.Store(1)
	err = p.Run(context.Background())
	if !errors.Is(err, checkpointer.ErrPauseRefused) {
		t.Fatalf("primary: %v", err)
	}
	if c, _, _ := out.snapshot(); c != 0 {
		t.Fatalf("%d epochs released", c)
	}
}
