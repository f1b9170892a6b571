// SPDX-License-Identifier: Apache-2.0

package hacluster

import (
	"context"
	"math/rand/v2"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/resilire/resilire/testenv"
	"github.com/resilire/resilire/testenv/guest/xbank"
)

// runGroupKill protects three guests as one VDEchp group (vm0 and vm1 on
// host-a, vm2 on host-b, every backup on host-c), lets them send each
// other transfers, kills host-a or host-b (at random) at a random moment
// and requires the whole group, the surviving host's members included, to
// resume on host-c from one committed round; then audits the books. It
// returns the violations found.
func runGroupKill(t *testing.T, o GroupOptions) []string {
	ctx, g := setupGroupTest(t, o, "rg")
	time.Sleep(3*time.Second + rand.N(2*time.Second))
	if o.RestartCoordinator {
		if err := g.RestartCoordinator(ctx); err != nil {
			t.Fatal(err)
		}
		time.Sleep(rand.N(2 * time.Second))
	}
	if o.HangCoordinator {
		took, err := g.HangCoordinator(ctx)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("the standby coordinator committed its first round %v after the leader hung", took.Round(time.Millisecond))
		time.Sleep(rand.N(2 * time.Second))
	}
	t.Logf("before the kill: %s", g.ColourCounters())
	t.Logf("agents' peak RSS, with the guest RAM they map (own: anonymous RSS now), MiB: %s", g.PeakRSS())
	killed := killAndWait(t, ctx, g, rand.N(2), "host-c") // host-a (vm0, vm1) or host-b (vm2)
	return auditBooks(t, ctx, g, killed)
}

// setupGroupTest builds the group rig for t (a VM host is required) and
// tears it down after, with the agents' logs if t failed (or
// RESILIRE_GROUP_LOGS is set).
func setupGroupTest(t *testing.T, o GroupOptions, prefix string) (context.Context, *Group) {
	requireVM(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	t.Cleanup(cancel)
	o.Prefix, o.Binary, o.Log = testenv.RigPrefix(prefix), resilireBin(t), testLog{t}
	g, err := SetupGroup(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() || os.Getenv("RESILIRE_GROUP_LOGS") != "" {
			g.DumpLogs(testLog{t})
		}
		if err := g.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
	})
	return ctx, g
}

// killAndWait kills host and waits until every member runs on its backup
// (onto names where); it returns when the host died.
func killAndWait(t *testing.T, ctx context.Context, g *Group, host int, onto string) time.Time {
	killed := time.Now()
	if err := g.KillHost(host); err != nil {
		t.Fatal(err)
	}
	t.Logf("host-%c killed", 'a'+host)
	running, err := g.WaitRecovered(ctx, 3*time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("every member runs on %s %v after the kill: %s", onto, running.Sub(killed).Round(time.Millisecond), g.RecoveryLine())
	return killed
}

// auditBooks settles and audits the guests' books and returns the
// violations; it fails t if the workload did not run.
func auditBooks(t *testing.T, ctx context.Context, g *Group, killed time.Time) []string {
	audits, err := g.Audit(ctx, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	n, pending, passes := 0, 0, 0
	for _, a := range audits {
		n += len(a.Sent)
		pending += a.Pending
		passes += len(a.Token.Passed)
	}
	v := xbank.Check(audits, pending == 0)
	shown := 0
	for i, a := range audits {
		for _, tr := range a.Sent {
			if _, ok := audits[tr.To].Received[tr.ID]; !ok && shown < 10 {
				shown++
				t.Logf("not credited: guest %d -> %d, debited %v from the kill (guest clock)", i, tr.To, time.Unix(0, tr.At).Sub(killed).Round(time.Millisecond))
			}
		}
	}
	t.Logf("%d transfers and %d token passes in the resumed books, %d still unacknowledged; violations: %q", n, passes, pending, v)
	if n < 30 || passes < 10 {
		t.Fatalf("only %d transfers and %d token passes: the workload did not run", n, passes)
	}
	return v
}

// TestE2EGroupHostKill: the group resumes from a consistent cut: every
// credit matches a debit that survived, and the group's total is intact.
func TestE2EGroupHostKill(t *testing.T) {
	if v := runGroupKill(t, GroupOptions{}); len(v) > 0 {
		t.Fatalf("group recovery broke the books: %q", v)
	}
}

// TestE2EGroupUnsafeNoHold is the negative control: with frames from a
// later round delivered at once, the resumed cut keeps credits whose
// debits rolled back, and the audit must say so.
func TestE2EGroupUnsafeNoHold(t *testing.T) {
	if v := runGroupKill(t, GroupOptions{UnsafeNoHold: true}); len(v) == 0 {
		t.Fatal("no violation without the colour hold: the checker cannot tell")
	}
}

// TestE2EGroupStopTheWorldNoHold: the stop-the-world baseline keeps the
// cut consistent by itself: no guest runs round r+1 before every guest
// captured round r, so even without the colour hold (whose absence
// TestE2EGroupUnsafeNoHold shows the audit detects under VDEchp's
// rounds) a host death leaves no orphan. Its halts are staggered by
// 50 ms, not the rig's 80: each guest stays paused from its halt until
// the last one's, and at 80 ms the token ring passed too seldom for the
// audit to call the workload run.
func TestE2EGroupStopTheWorldNoHold(t *testing.T) {
	if v := runGroupKill(t, GroupOptions{StopTheWorld: true, UnsafeNoHold: true, Stagger: 50 * time.Millisecond}); len(v) > 0 {
		t.Fatalf("stop-the-world rounds broke the books: %q", v)
	}
}

// runBackupHostKill kills host-c (every member's backup and the
// coordinator) under the workload and returns, per guest, how long after
// the kill it answered a client's request sent once the members had
// noticed (after their 1 s heartbeat timeout; 0: no answer within
// answerWithin of the kill).
func runBackupHostKill(t *testing.T, o GroupOptions) (*Group, context.Context, time.Time, []time.Duration) {
	const noticed, answerWithin = 1500 * time.Millisecond, 15 * time.Second
	ctx, g := setupGroupTest(t, o, "rb")
	time.Sleep(3*time.Second + rand.N(2*time.Second))
	killed := time.Now()
	if err := g.KillHost(2); err != nil {
		t.Fatal(err)
	}
	t.Logf("host-c killed: every backup and the coordinator")
	time.Sleep(noticed)
	answered := make([]time.Duration, len(g.VMs))
	var wg sync.WaitGroup
	for i := range g.VMs {
		wg.Go(func() {
			for time.Since(killed) < answerWithin {
				pctx, cancel := context.WithDeadline(ctx, killed.Add(answerWithin))
				_, err := g.Ping(pctx, i)
				cancel()
				if err == nil {
					answered[i] = time.Since(killed)
					return
				}
				time.Sleep(100 * time.Millisecond)
			}
		})
	}
	wg.Wait()
	t.Logf("answer to a client's request sent %v after the kill, per guest, from the kill: %v", noticed, answered)
	return g, ctx, killed, answered
}

// TestE2EGroupBackupHostKill: the backups' host dies, the coordinator
// with it. With --on-backup-loss continue the members go on unprotected:
// every guest answers its clients again, and the books settle (their
// internal frames flow: the members stopped colouring, nothing waits for
// a round).
func TestE2EGroupBackupHostKill(t *testing.T) {
	g, ctx, killed, answered := runBackupHostKill(t, GroupOptions{OnBackupLoss: "continue"})
	for i, d := range answered {
		if d == 0 {
			t.Fatalf("%s never answered a client after its backup's host died", g.VMs[i].Name)
		}
	}
	if v := auditBooks(t, ctx, g, killed); len(v) > 0 {
		t.Fatalf("books after the backups' host died: %q", v)
	}
}

// TestE2EGroupBackupHostKillBlock is its control: with the default
// --on-backup-loss block, every member holds its output until a backup is
// back, and no guest may answer.
func TestE2EGroupBackupHostKillBlock(t *testing.T) {
	g, _, _, answered := runBackupHostKill(t, GroupOptions{})
	for i, d := range answered {
		if d != 0 {
			t.Fatalf("%s answered a client %v after its backup's host died, with the block policy", g.VMs[i].Name, d)
		}
	}
}

// TestE2EGroupBackupAgentCrash: vm2's standby agent (and its standby
// QEMU) is killed; its primary and every other member run on. Nothing is
// rolled back and no member is stopped; the group commits nothing while
// vm2 has no backup (its members hold their output); a new standby is
// started, vm2's primary fills it, the group commits again: every guest
// answers its clients and the books hold.
func TestE2EGroupBackupAgentCrash(t *testing.T) {
	ctx, g := setupGroupTest(t, GroupOptions{}, "ra")
	time.Sleep(3*time.Second + rand.N(2*time.Second))
	killed := time.Now()
	if err := g.KillStandby(2); err != nil {
		t.Fatal(err)
	}
	t.Logf("vm2's standby agent killed")
	time.Sleep(4 * time.Second)
	select {
	case <-g.Coord.Exited():
		t.Fatalf("the coordinator exited after a backup agent's crash: %s", g.Coord.tail(20))
	default:
	}
	for _, vm := range g.VMs {
		st, err := vm.protect.Status(ctx)
		if err != nil {
			t.Fatalf("%s's primary agent: %v", vm.Name, err)
		}
		t.Logf("%s's primary: %s", vm.Name, st.State)
	}
	restarted := time.Now()
	if err := g.RestartStandby(ctx, 2); err != nil {
		t.Fatal(err)
	}
	for i, vm := range g.VMs {
		pctx, cancel := context.WithTimeout(ctx, 3*time.Minute)
		for {
			if _, err := g.Ping(pctx, i); err == nil {
				break
			}
			if pctx.Err() != nil {
				cancel()
				t.Fatalf("%s does not answer after its group's backup came back", vm.Name)
			}
			time.Sleep(200 * time.Millisecond)
		}
		cancel()
	}
	t.Logf("every guest answers %v after the new standby started", time.Since(restarted).Round(time.Millisecond))
	if l := g.RecoveryLine(); l != "" {
		t.Fatalf("the group rolled back for a backup agent's crash: %s", l)
	}
	if v := auditBooks(t, ctx, g, killed); len(v) > 0 {
		t.Fatalf("books after a backup agent's crash: %q", v)
	}
}

// TestE2EGroupReprotect: a second failure survived. host-a or host-b
// dies and the group resumes on host-c; each backup there protects the
// guest it resumed to a standby on host-d, a second coordinator on host-d
// runs the group's rounds again; then host-c dies and the group resumes
// on host-d. The books must hold across both.
func TestE2EGroupReprotect(t *testing.T) {
	if v := runGroupReprotect(t, GroupOptions{Reprotect: true}); len(v) > 0 {
		t.Fatalf("after two host deaths the books broke: %q", v)
	}
}

// TestE2EGroupReprotectUnsafeNoHold is its negative control: the second
// group runs without the colour hold, and host-c's death must leave
// orphans the audit finds (the first recovery is the safe one).
func TestE2EGroupReprotectUnsafeNoHold(t *testing.T) {
	if v := runGroupReprotect(t, GroupOptions{Reprotect: true, UnsafeReprotectNoHold: true}); len(v) == 0 {
		t.Fatal("no violation without the second group's colour hold: the checker cannot tell")
	}
}

func runGroupReprotect(t *testing.T, o GroupOptions) []string {
	ctx, g := setupGroupTest(t, o, "rr")
	time.Sleep(2*time.Second + rand.N(2*time.Second))
	killAndWait(t, ctx, g, rand.N(2), "host-c")
	if err := g.Reprotected(ctx, 3*time.Minute); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2*time.Second + rand.N(2*time.Second))
	killed := killAndWait(t, ctx, g, 2, "host-d")
	return auditBooks(t, ctx, g, killed)
}

// TestE2EGroupCoordinatorRestart: the coordinator's process is killed
// mid-run and started again; it goes on from the members' rounds, and the
// host killed after that is recovered from a consistent cut, as above
// (the negative controls of that check are the tests around this one).
func TestE2EGroupCoordinatorRestart(t *testing.T) {
	if v := runGroupKill(t, GroupOptions{RestartCoordinator: true}); len(v) > 0 {
		t.Fatalf("group recovery after a coordinator restart broke the books: %q", v)
	}
}

// TestE2EGroupCoordinatorTakeover: the coordinator's process hangs
// (SIGSTOP) with a standby coordinator watching; the standby must lead
// only then, the old one, let run again, must find itself superseded and
// exit without ordering anything, and a host killed afterwards must be
// recovered by the new leader with the books intact.
func TestE2EGroupCoordinatorTakeover(t *testing.T) {
	if v := runGroupKill(t, GroupOptions{HangCoordinator: true}); len(v) > 0 {
		t.Fatalf("group recovery after a coordinator takeover broke the books: %q", v)
	}
}

// TestE2EGroupUDPHostKill: credits sent once over UDP, so a credit in
// transit across the group's cut reaches its receiver only through the
// backups' input-log replay (frames of round <= R): nothing is lost.
func TestE2EGroupUDPHostKill(t *testing.T) {
	if v := runGroupKill(t, GroupOptions{UDP: true}); len(v) > 0 {
		t.Fatalf("group recovery broke the books: %q", v)
	}
}

// TestE2EGroupUnsafeNoInputReplay is its negative control: without the
// replay, credits in transit across the cut are lost, and the audit must
// say so.
func TestE2EGroupUnsafeNoInputReplay(t *testing.T) {
	if v := runGroupKill(t, GroupOptions{UDP: true, UnsafeNoInputReplay: true}); len(v) == 0 {
		t.Fatal("no violation without the in-transit replay: the checker cannot tell")
	}
}
