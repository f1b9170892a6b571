// SPDX-License-Identifier: Apache-2.0

package checkpointer_test

import (
	"context"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/resilire/resilire/checkpointer"
	"github.com/resilire/resilire/checkpointer/codec"
	"github.com/resilire/resilire/checkpointer/sim"
)

// blindDomain is a dirty log blind to one page: from the moment blind is
// set, its harvests never report that page (a writer the tracker cannot
// see). The guest keeps writing it.
type blindDomain struct {
	*sim.Domain
	mu    sync.Mutex
	blind int64 // -1: sees everything
}

func (d *blindDomain) HarvestDirty(ctx context.Context, dst []uint64) ([]uint64, error) {
	n0 := len(dst)
	dst, err := d.Domain.HarvestDirty(ctx, dst)
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.blind >= 0 {
		dst = append(dst[:n0], slices.DeleteFunc(dst[n0:], func(p uint64) bool { return p == uint64(d.blind) })...)
	}
	return dst, err
}

// nopOutput numbers epochs and checks nothing.
type nopOutput struct {
	mu   sync.Mutex
	next uint64
}

func (o *nopOutput) Advance() (uint64, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.next++
	return o.next, nil
}
func (o *nopOutput) Release(uint64) error { return nil }
func (o *nopOutput) Discard() error       { return nil }

// runScrubbed protects a busy guest with a scrub every 5 epochs and
// returns the two agents' status once a scrub with the wanted result came
// back, with the primary's metrics and log.
func runScrubbed(t *testing.T, dom *blindDomain, want string) (checkpointer.Status, checkpointer.Status, *checkpointer.Metrics, string) {
	t.Helper()
	replica := sim.NewReplica(dom.MemorySize())
	log, logs := testLogger(t)
	b, addr, _ := startBackup(t, checkpointer.BackupConfig{VM: "vm1", Replica: replica, Standby: &fakeStandby{replica: replica},
		Codec: codec.Raw{}, HeartbeatInterval: 20 * time.Millisecond, HeartbeatTimeout: 500 * time.Millisecond,
		Failover: checkpointer.FailoverConfig{Fence: checkpointer.CommandFencer{Command: "true"}}, Logger: log})
	m := checkpointer.NewMetrics(prometheus.NewRegistry(), "primary", "vm1")
	p, err := checkpointer.NewPrimary(checkpointer.PrimaryConfig{Domain: dom, Output: &nopOutput{}, Codec: codec.Raw{}, Dial: dialer(addr),
		Interval: 5 * time.Millisecond, HeartbeatInterval: 20 * time.Millisecond, HeartbeatTimeout: 500 * time.Millisecond,
		ScrubEvery: 5, Logger: log, Metrics: m})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- p.Run(ctx) }()
	waitFor(t, 20*time.Second, "a scrub result "+want, func() bool {
		s := p.Status().Scrub
		return s != nil && s.Result == want
	})
	ps := p.Status()
	cancel()
	if err := recvWithin(t, errc, 20*time.Second, "primary"); err != nil {
		t.Fatalf("primary: %v", err)
	}
	return ps, b.Status(), m, logs.String()
}

// Positive control: a dirty log that sees everything scrubs clean.
func TestScrubCleanWhenNothingMissed(t *testing.T) {
	dom := &blindDomain{Domain: sim.NewDomain(sim.Config{Name: "vm1", MemSize: 4 << 20, Seed: 3, WritesPerMs: 50, HotPages: 256}), blind: -1}
	dom.Start()
	t.Cleanup(dom.Stop)
	ps, _, m, _ := runScrubbed(t, dom, "ok")
	if ps.Scrub.PageCount != 0 || value(t, m.Scrubs.WithLabelValues("diverged")) != 0 {
		t.Fatalf("clean run raised a divergence: %+v", ps.Scrub)
	}
}

// Negative control: a dirty log blind to one page the guest writes. The
// scrub must raise the alarm on both sides and name exactly that page.
func TestScrubCatchesMissedPage(t *testing.T) {
	const planted = 77 // inside the guest's hot set: written all the time
	dom := &blindDomain{Domain: sim.NewDomain(sim.Config{Name: "vm1", MemSize: 4 << 20, Seed: 3, WritesPerMs: 50, HotPages: 128}), blind: planted}
	dom.Start()
	t.Cleanup(dom.Stop)
	ps, bs, m, logs := runScrubbed(t, dom, "diverged")
	if !slices.Equal(ps.Scrub.Pages, []uint64{planted}) || ps.Scrub.PageCount != 1 {
		t.Errorf("primary named pages %v (count %d), want [%d]", ps.Scrub.Pages, ps.Scrub.PageCount, planted)
	}
	if got := value(t, m.ScrubDivergedPages); got != 1 {
		t.Errorf("resilire_scrub_diverged_pages %v, want 1", got)
	}
	if bs.Scrub == nil || bs.Scrub.Result != "diverged" || bs.Scrub.Chunks != 1 {
		t.Errorf("backup scrub status %+v", bs.Scrub)
	}
	mustContain(t, logs, "scrub: backup replica diverges from primary memory")
	mustContain(t, logs, "scrub: replica diverges from the primary's memory")
	if !strings.Contains(logs, "pages=[77]") {
		t.Errorf("log does not name page 77:\n%s", logs)
	}
}

// value reads a counter's or gauge's current value.
func value(t *testing.T, c prometheus.Metric) float64 {
	t.Helper()
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		t.Fatal(err)
	}
	if m.Counter != nil {
		return m.Counter.GetValue()
	}
	return m.Gauge.GetValue()
}
