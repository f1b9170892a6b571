// SPDX-License-Identifier: Apache-2.0

package checkpointer_test

import (
	"context"
	"errors"
	"net"
	"testing"
	"time"

	"github.com/resilire/resilire/checkpointer"
	"github.com/resilire/resilire/checkpointer/codec"
	"github.com/resilire/resilire/checkpointer/sim"
)

// The role state machine: a standby whose primary dies fences, activates
// the guest and becomes its primary, which protects it toward a new
// standby by itself (continue policy: it talks unprotected until then).
// /status follows: role backup, then primary with a history of both.
func TestRolesBecomePrimaryAndProtectAgain(t *testing.T) {
	// host-b: the standby that will take over.
	replica := sim.NewReplica(testMem)
	sb := &fakeStandby{replica: replica}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	log, logs := testLogger(t)
	b, err := checkpointer.NewBackup(checkpointer.BackupConfig{VM: "vm1", Replica: replica, Standby: sb, Codec: codec.Raw{}, Listener: ln,
		HeartbeatInterval: 20 * time.Millisecond, HeartbeatTimeout: 200 * time.Millisecond,
		Failover: checkpointer.FailoverConfig{Fence: checkpointer.CommandFencer{Command: "true"}}, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	// host-c: the standby host-b protects the guest toward once live.
	_, addrC, _, _ := newTestBackup(t, nil, nil)
	promoted := make(chan struct{})
	roles := checkpointer.NewRoles(b, func(context.Context) (*checkpointer.Primary, func(), error) {
		close(promoted)
		dom := sim.NewDomain(sim.Config{Name: "vm1", MemSize: testMem, Seed: 2})
		dom.Start()
		p, err := checkpointer.NewPrimary(checkpointer.PrimaryConfig{Domain: dom, Output: checkpointer.NewEpochCounter(), Codec: codec.Raw{},
			Dial: dialer(addrC), Interval: 10 * time.Millisecond, HeartbeatInterval: 20 * time.Millisecond,
			OnBackupLoss: checkpointer.LossContinue, RetryInterval: 20 * time.Millisecond})
		return p, dom.Stop, err
	}, log)
	if st := roles.Status(); st.Role != "backup" || len(st.History) != 1 {
		t.Fatalf("before anything: %+v", st)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- roles.Run(ctx) }()

	// host-a protects the guest to host-b, then dies.
	dom := sim.NewDomain(sim.Config{Name: "vm1", MemSize: testMem, Seed: 1})
	dom.Start()
	defer dom.Stop()
	pa, err := checkpointer.NewPrimary(checkpointer.PrimaryConfig{Domain: dom, Output: checkpointer.NewEpochCounterAt(1), Codec: codec.Raw{},
		Dial: dialer(ln.Addr().String()), Interval: 10 * time.Millisecond, HeartbeatInterval: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	actx, killA := context.WithCancel(ctx)
	aDone := make(chan error, 1)
	go func() { aDone <- pa.Run(actx) }()
	waitFor(t, 10*time.Second, "host-b to hold a checkpoint", func() bool { e, _ := b.Committed(); return e > 2 })
	killA()
	if err := <-aDone; err != nil {
		t.Fatalf("host-a's primary: %v", err)
	}
	recvWithin(t, promoted, 10*time.Second, "promotion after the failover")
	// Read only after the promotion: a checkpoint host-a sent before it
	// died may still be applied between its death and the failover.
	committed, _ := b.Committed()
	waitFor(t, 10*time.Second, "host-b protecting toward host-c", func() bool {
		st := roles.Status()
		return st.Role == "primary" && st.State == checkpointer.StateProtected && st.Epoch > 0
	})
	if ok, _, _, _ := sb.get(); !ok {
		t.Fatal("promoted without activating the guest")
	}
	st := roles.Status()
	if len(st.History) != 2 || st.History[0].Role != "backup" || st.History[1].Role != "primary" || st.History[1].Epoch != committed {
		t.Fatalf("history %+v, want backup then primary from epoch %d", st.History, committed)
	}
	mustContain(t, logs.String(), "now its primary")
	cancel()
	if err := recvWithin(t, done, 10*time.Second, "roles to stop"); err != nil {
		t.Fatalf("Run: %v", err)
	}
}

// Without a way to protect again the agent stays active, and a promotion
// that fails is reported while the guest keeps running here.
func TestRolesPromotionFails(t *testing.T) {
	replica := sim.NewReplica(testMem)
	sb := &fakeStandby{replica: replica}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b, err := checkpointer.NewBackup(checkpointer.BackupConfig{VM: "vm1", Replica: replica, Standby: sb, Codec: codec.Raw{}, Listener: ln,
		HeartbeatInterval: 20 * time.Millisecond, HeartbeatTimeout: 200 * time.Millisecond,
		Failover: checkpointer.FailoverConfig{UnsafeNoFence: true}})
	if err != nil {
		t.Fatal(err)
	}
	roles := checkpointer.NewRoles(b, func(context.Context) (*checkpointer.Primary, func(), error) {
		return nil, nil, errPromote
	}, nil)
	done := make(chan error, 1)
	go func() { done <- roles.Run(context.Background()) }()
	tp := dialTestPrimary(t, ln.Addr().String(), nil)
	commitFirst(t, tp)
	tp.conn.Close()
	err = recvWithin(t, done, 10*time.Second, "roles to fail")
	if !errors.Is(err, errPromote) {
		t.Fatalf("Run: %v, want the promotion's error", err)
	}
	if ok, _, _, _ := sb.get(); !ok {
		t.Fatal("the guest was not activated")
	}
}

var errPromote = errors.New("promotion refused")
