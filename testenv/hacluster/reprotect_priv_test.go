// SPDX-License-Identifier: Apache-2.0

package hacluster

import (
	"bytes"
	"context"
	"strconv"
	"testing"
	"time"
)

// TestE2EAlternatingDeaths is continuous protection: host-a dies, host-b
// goes live and, once host-a is back as a standby, protects the guest again
// by itself; then host-b dies and host-a goes live; and so on, each death at
// a random phase. The client's one TCP connection survives every death
// with no acknowledged write lost, and the bank on the guest's replicated
// disk loses no acknowledged transfer. RESILIRE_SOAK_N sets the number of
// deaths (default 2; `make soak` runs SOAK_N).
func TestE2EAlternatingDeaths(t *testing.T) {
	requireVM(t)
	n := soakN(t, 2)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute+time.Duration(n)*time.Minute)
	defer cancel()
	c := setup(t, ctx, Options{Reprotect: true, InputReplay: true, Disk: true})
	r, err := Deaths(ctx, c, DeathsOptions{N: n, FirstKill: killPhase(), Return: 2 * time.Second, Protected: time.Second,
		PhaseJitter: killPhase, After: 3 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	r.Print(&out)
	t.Logf("\n%s", out.String())
	if !r.Survived() {
		t.Fatalf("%d deaths: not survived (lost %d, inconsistent %d, reconnects %d, acked after the last death %d, bank %v)", n,
			len(r.Lost), r.Load.Inconsistent, r.Load.Reconnects, r.AckedAfterKill, r.Bank != nil && !r.Bank.Safe())
	}
	for _, p := range r.Phases {
		if p.Summary.Requests == 0 {
			t.Errorf("no request answered in phase %q", p.Name)
		}
	}
}

// TestE2EUnsafeReprotect is the negative control: the same two deaths with
// host-b protecting the guest again WITHOUT output commit. The second death
// must show the violation (a lost acknowledged write or a rolled-back
// reply); the outcome is probabilistic, so up to three runs.
func TestE2EUnsafeReprotect(t *testing.T) {
	requireVM(t)
	const attempts = 3
	for i := range attempts {
		var violated bool
		t.Run("run"+strconv.Itoa(i), func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
			defer cancel()
			c := setup(t, ctx, Options{Reprotect: true, UnsafeReprotect: true, InputReplay: true})
			r, err := Deaths(ctx, c, DeathsOptions{FirstKill: killPhase(), Return: 2 * time.Second, Protected: killPhase(), After: 3 * time.Second})
			if err != nil {
				t.Fatal(err)
			}
			violated = !r.Safe()
			t.Logf("unsafe re-protection: lost %d, inconsistent %d, reconnects %d", len(r.Lost), r.Load.Inconsistent, r.Load.Reconnects)
		})
		if violated {
			return
		}
	}
	t.Fatalf("no violation in %d runs with host-b re-protecting without output commit: the checker cannot tell", attempts)
}

// TestE2EStaleReturn isolates host-a instead of killing it: its agent
// crashes and its cables are pulled, its QEMU (and pinned data plane)
// stay. Fenced by its cables only, it comes back with the stale guest
// still running: the returning standby destroys it, and no guest frame
// leaves host-a until host-a goes live again after host-b's death.
func TestE2EStaleReturn(t *testing.T) {
	requireVM(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	c := setup(t, ctx, Options{Reprotect: true, FenceKeepsQEMU: true, InputReplay: true})
	r, err := Deaths(ctx, c, DeathsOptions{FirstKill: killPhase(), Return: 2 * time.Second, Protected: killPhase(),
		After: 3 * time.Second, IsolateFirst: true})
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	r.Print(&out)
	t.Logf("\n%s", out.String())
	if r.StalePid == 0 {
		t.Fatal("no stale QEMU on host-a at its return: the scenario did not happen")
	}
	if r.StandbyPid == 0 || r.StandbyPid == r.StalePid {
		t.Errorf("the stale QEMU %d was not replaced (warm standby pid %d)", r.StalePid, r.StandbyPid)
	}
	if r.FramesFromA != 0 {
		t.Errorf("%d guest frames left host-a before it went live", r.FramesFromA)
	}
	if r.FramesFromALive == 0 {
		t.Error("no guest frame from host-a after it went live: the watcher saw nothing at all")
	}
	if !r.Survived() {
		t.Fatalf("not survived: lost %d, inconsistent %d, reconnects %d, acked after %d", len(r.Lost), r.Load.Inconsistent, r.Load.Reconnects, r.AckedAfterKill)
	}
}

// TestE2ESwitchover moves the guest to host-b, back, and to host-b again by
// planned switchovers under load (resilire switchover on the primary's
// host): no acknowledged write or transfer lost, the client's TCP
// connection kept, and each old primary's agent serving as the guest's
// standby by itself (protect's and a promoted standby's alike), the guest
// protected again before the next switchover.
func TestE2ESwitchover(t *testing.T) {
	requireVM(t)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	c := setup(t, ctx, Options{Reprotect: true, InputReplay: true, Disk: true})
	r, err := Deaths(ctx, c, DeathsOptions{N: 3, Switchover: true, FirstKill: killPhase(), Return: time.Second, Protected: time.Second,
		PhaseJitter: killPhase, After: 3 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	r.Print(&out)
	t.Logf("\n%s", out.String())
	if !r.Survived() {
		t.Fatalf("switchovers: lost %d, inconsistent %d, reconnects %d, acked after %d, bank safe %v",
			len(r.Lost), r.Load.Inconsistent, r.Load.Reconnects, r.AckedAfterKill, r.Bank == nil || r.Bank.Safe())
	}
	for _, d := range r.Deaths {
		if d.Took == 0 {
			t.Errorf("switchover away from %s not timed", d.Host)
		}
	}
}
