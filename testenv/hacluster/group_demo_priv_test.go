// SPDX-License-Identifier: Apache-2.0

package hacluster

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/resilire/resilire/testenv"
	"github.com/resilire/resilire/testenv/guest/xbank"
)

// latencies are sorted round trips.
type latencies []time.Duration

func (l latencies) pct(q float64) time.Duration {
	if len(l) == 0 {
		return 0
	}
	return l[min(len(l)-1, int(q*float64(len(l))))]
}

func (l latencies) String() string {
	return fmt.Sprintf("p50 %7.1f ms  p99 %7.1f ms  (n=%d)", ms(l.pct(.5)), ms(l.pct(.99)), len(l))
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// internal are the guests' transfer round trips acknowledged in [from, to).
func internal(audits []xbank.Audit, from, to time.Time) latencies {
	var l latencies
	for _, a := range audits {
		for _, r := range a.RTTs {
			if at := time.UnixMilli(r[0]); !at.Before(from) && at.Before(to) {
				l = append(l, time.Duration(r[1])*time.Microsecond)
			}
		}
	}
	slices.Sort(l)
	return l
}

// pingEvent is one client round trip, for the timeline.
type pingEvent struct {
	at  time.Time
	vm  int
	rtt time.Duration
	err error
}

// pinger pings every guest in turn until stopped.
func pinger(ctx context.Context, g *Group) (stop func() []pingEvent) {
	ctx, cancel := context.WithCancel(ctx)
	var (
		mu     sync.Mutex
		events []pingEvent
		wg     sync.WaitGroup
	)
	for i := range g.VMs {
		wg.Go(func() {
			for ctx.Err() == nil {
				pctx, pcancel := context.WithTimeout(ctx, 30*time.Second)
				rtt, err := g.Ping(pctx, i)
				pcancel()
				mu.Lock()
				events = append(events, pingEvent{time.Now(), i, rtt, err})
				mu.Unlock()
				if err != nil {
					time.Sleep(100 * time.Millisecond)
				}
				time.Sleep(50 * time.Millisecond)
			}
		})
	}
	return func() []pingEvent { cancel(); wg.Wait(); return events }
}

func externalOf(ev []pingEvent, from, to time.Time) latencies {
	var l latencies
	for _, e := range ev {
		if e.err == nil && !e.at.Before(from) && e.at.Before(to) {
			l = append(l, e.rtt)
		}
	}
	slices.Sort(l)
	return l
}

// TestGroupDemo is `make demo-group`: the same three guests and workload
// unprotected, under per-VM Remus on every port (internal frames held for
// the group's commit) and under VDEchp (internal frames coloured, not
// held), side by side; then, under VDEchp, host-a dies and the timeline
// shows the client's and the guests' latency across the group's recovery.
func TestGroupDemo(t *testing.T) {
	if os.Getenv("RESILIRE_DEMO_GROUP") != "1" {
		t.Skip("the group demo: make demo-group")
	}
	requireVM(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	const settle, measure, bulkFor = 3 * time.Second, 10 * time.Second, 3 * time.Second
	var report strings.Builder
	fmt.Fprintf(&report, "\nVM-to-VM and client round trips, same guests and workload, %v each (round interval 200 ms):\n", measure)
	for _, mode := range []struct {
		name string
		o    GroupOptions
	}{
		{"unprotected", GroupOptions{Unprotected: true}},
		{"per-VM Remus, every port held", GroupOptions{Uncoloured: true, Stagger: -1}},
		{"stop-the-world (VNsnap-style)", GroupOptions{Stagger: -1, StopTheWorld: true}},
		{"VDEchp, early commit (unsafe)", GroupOptions{Stagger: -1, UnsafeEarlyCommit: true}},
		{"VDEchp (coloured)", GroupOptions{Stagger: -1}},
	} {
		o := mode.o
		o.Prefix, o.Binary, o.Log = testenv.RigPrefix("rd"), resilireBin(t), testLog{t}
		g, err := SetupGroup(ctx, o)
		if err != nil {
			t.Fatal(err)
		}
		time.Sleep(settle)
		rate, err := g.Bulk(ctx, 0, 2, bulkFor)
		if err != nil {
			t.Fatal(err)
		}
		stop := pinger(ctx, g)
		from := time.Now()
		time.Sleep(measure)
		to := time.Now()
		pauses, err := g.Pauses(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var timeline string
		var books []string
		if mode.o.Stagger == -1 && !mode.o.Uncoloured && !mode.o.UnsafeEarlyCommit && !mode.o.StopTheWorld {
			timeline, books = demoKill(t, ctx, g, stop)
		} else {
			stop()
		}
		audits, err := g.Sample(ctx)
		if err != nil {
			t.Fatal(err)
		}
		ev := stop()
		fmt.Fprintf(&report, "  %-32s VM-to-VM %s\n  %-32s client   %s\n  %-32s VM-to-VM bulk (vm0 on host-a -> vm2 on host-b, %v): %.2f MB/s\n",
			mode.name, internal(audits, from, to), "", externalOf(ev, from, to), "", bulkFor, rate/1e6)
		if pauses != "" {
			fmt.Fprintf(&report, "  %-32s guest pause per checkpoint p50/p99 (ms): %s\n", "", pauses)
		}
		if timeline != "" {
			fmt.Fprintf(&report, "\nVDEchp, host-a (vm0, vm1) killed; vm2 (host-b) rolls back with them; everything resumes on host-c:\n%s", timeline)
			verdict := "consistent"
			if len(books) > 0 {
				verdict = strings.Join(books, "; ")
			}
			fmt.Fprintf(&report, "  books after the recovery: %s\n", verdict)
		}
		if err := g.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
	}
	t.Log(report.String())
}

// demoKill kills host-a under the pinger, waits for the group's recovery
// and returns the timeline and the audit's violations.
func demoKill(t *testing.T, ctx context.Context, g *Group, stopPing func() []pingEvent) (string, []string) {
	killed := time.Now()
	if err := g.KillHost(0); err != nil {
		t.Fatal(err)
	}
	recovered, err := g.WaitRecovered(ctx, 3*time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(6 * time.Second)
	end := time.Now()
	ev := stopPing()
	audits, err := g.Sample(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "  %-9s %-34s %s\n", "t (s)", "client round trip (max, ok/tries)", "VM-to-VM round trip (p50, n; guest clock)")
	const bucket = 500 * time.Millisecond
	for s := killed.Add(-2 * time.Second); s.Before(end); s = s.Add(bucket) {
		e := s.Add(bucket)
		var maxRTT time.Duration
		ok, tries := 0, 0
		for _, p := range ev {
			if p.at.Before(s) || !p.at.Before(e) {
				continue
			}
			tries++
			if p.err == nil {
				ok++
				maxRTT = max(maxRTT, p.rtt)
			}
		}
		in := internal(audits, s, e)
		mark := ""
		if !killed.Before(s) && killed.Before(e) {
			mark = "  <- host-a killed"
		}
		if !recovered.Before(s) && recovered.Before(e) {
			mark += "  <- group recovered on host-c"
		}
		fmt.Fprintf(&b, "  %+6.1f    %8.1f ms  %2d/%-2d %18s %8.1f ms  %4d%s\n", s.Sub(killed).Seconds(), ms(maxRTT), ok, tries, "", ms(in.pct(.5)), len(in), mark)
	}
	// Whole-group downtime: the worst guest's first answered ping after
	// the kill.
	var down time.Duration
	for i := range g.VMs {
		for _, p := range ev {
			if p.vm == i && p.err == nil && p.at.After(killed) {
				down = max(down, p.at.Sub(killed))
				break
			}
		}
	}
	fmt.Fprintf(&b, "  recovery: kill -> every member running on host-c %.0f ms; client-seen group downtime (first answer after the kill, worst guest) %.0f ms\n",
		ms(recovered.Sub(killed)), ms(down))
	paused, err := g.Audit(ctx, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	return b.String(), xbank.Check(paused, true)
}
