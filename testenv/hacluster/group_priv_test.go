// SPDX-License-Identifier: Apache-2.0

package hacluster

import (
	"context"
	"math/rand/v2"
	"os"
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
	requireVM(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	o.Prefix, o.Binary, o.Log = testenv.RigPrefix("rg"), resilireBin(t), testLog{t}
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
	time.Sleep(3*time.Second + rand.N(2*time.Second))
	if o.RestartCoordinator {
		if err := g.RestartCoordinator(ctx); err != nil {
			t.Fatal(err)
		}
		time.Sleep(rand.N(2 * time.Second))
	}
	t.Logf("before the kill: %s", g.ColourCounters())
	t.Logf("agents' peak RSS (MiB): %s", g.PeakRSS())
	host := rand.N(2) // host-a (vm0, vm1) or host-b (vm2)
	killed := time.Now()
	if err := g.KillHost(host); err != nil {
		t.Fatal(err)
	}
	t.Logf("host-%c killed", 'a'+host)
	if err := g.WaitRecovered(ctx, 3*time.Minute); err != nil {
		t.Fatal(err)
	}
	t.Logf("every member runs on host-c %v after the kill: %s", time.Since(killed).Round(time.Millisecond), g.RecoveryLine())
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

// TestE2EGroupCoordinatorRestart: the coordinator's process is killed
// mid-run and started again; it goes on from the members' rounds, and the
// host killed after that is recovered from a consistent cut, as above
// (the negative controls of that check are the tests around this one).
func TestE2EGroupCoordinatorRestart(t *testing.T) {
	if v := runGroupKill(t, GroupOptions{RestartCoordinator: true}); len(v) > 0 {
		t.Fatalf("group recovery after a coordinator restart broke the books: %q", v)
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
