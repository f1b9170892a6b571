// SPDX-License-Identifier: Apache-2.0

package hacluster

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/resilire/resilire/checkpointer/qemu"
	"github.com/resilire/resilire/testenv"
	"github.com/resilire/resilire/testenv/kvload"
)

// host is one of the rig's two hosts as the scenarios see it.
type host struct {
	name  string
	h     testenv.Host
	cfg   qemu.Config
	json  string // its qemu.Config file
	img   string
	pin   string
	fence string // the script that fences it
}

func (c *Cluster) hosts() [2]host {
	return [2]host{
		{"host-a", c.Rig.A, c.CfgA, "a.json", c.ImgA, c.PinA, c.fence},
		{"host-b", c.Rig.B, c.CfgB, "b.json", c.ImgB, c.PinB, c.fenceB},
	}
}

// agent returns the agent now running on host i (0: host-a).
func (c *Cluster) agent(i int) *Agent {
	if c.agents[i] != nil {
		return c.agents[i]
	}
	if i == 0 {
		return c.protect
	}
	return c.standby
}

// ReturnHost brings host i back after its death: its cables are plugged in
// again and it runs a fresh standby agent (--discard-stale-guest destroys
// a QEMU of the guest still running there; its port stays blocked). The
// agent takes the other host as its peer: it fences it and goes live if it
// dies, and then protects the guest toward it again.
func (c *Cluster) ReturnHost(ctx context.Context, i int) error {
	me := c.hosts()[i]
	if err := c.Rig.SetHostLinks(me.h, true); err != nil {
		return err
	}
	args := c.standbyArgs(i, true, true)
	c.returns++
	a, err := startAgent(me.h.Netns, c.Bin, filepath.Join(c.RunDir, fmt.Sprintf("standby-%s-%d.log", me.name, c.returns)), args)
	if err != nil {
		return err
	}
	if old := c.agents[i]; old != nil {
		c.retired = append(c.retired, old)
	}
	c.agents[i] = a
	c.logf("%s back: standby agent started", me.name)
	return a.WaitStatus(ctx, 30*time.Second, func(s Status) bool { return s.State != "" })
}

// standbyArgs is the command line of host i's standby agent: the other
// host is its peer (fenced, and protected toward with reprotect).
func (c *Cluster) standbyArgs(i int, reprotect, discardStale bool) []string {
	hs := c.hosts()
	me, peer := hs[i], hs[1-i]
	hb := c.Opts.HeartbeatTimeout
	args := []string{"standby", "--vm", c.VM, "--listen", netip.AddrPortFrom(me.h.RepAddr, 7470).String(),
		"--fence-cmd", peer.fence, "--fence-timeout", "10s", "--peer", peer.name,
		"--heartbeat-interval", (hb / 5).String(), "--heartbeat-timeout", hb.String(), "--codec", c.Opts.Codec,
		"--domain", "qemu", "--qemu-config", filepath.Join(c.RunDir, me.json),
		"--dataplane", "--pin-root", me.pin, "--metrics-addr", "127.0.0.1:9470"}
	if discardStale {
		args = append(args, "--discard-stale-guest")
	}
	if reprotect {
		args = append(args, "--reprotect-to", netip.AddrPortFrom(peer.h.RepAddr, 7470).String(), "--interval", c.Opts.Interval.String())
	}
	if c.Opts.InputReplay {
		args = append(args, "--input-replay")
	}
	if c.Opts.Disk {
		args = append(args, "--disk-image", me.img, "--disk-socket", me.cfg.DiskSocket)
	}
	return args
}

// ReturnHostA is ReturnHost(ctx, 0).
func (c *Cluster) ReturnHostA(ctx context.Context) error { return c.ReturnHost(ctx, 0) }

// WaitReprotected waits until host i's standby holds a consistent
// checkpoint from the other host: the guest is protected again.
func (c *Cluster) WaitReprotected(ctx context.Context, i int, limit time.Duration) error {
	t0 := time.Now()
	if err := c.agent(i).WaitStatus(ctx, limit, func(s Status) bool { return s.Role == "backup" && s.State == "standby" && s.Epoch > 0 }); err != nil {
		return fmt.Errorf("re-protection: %w", err)
	}
	c.logf("protected again (standby on %s) after %v", c.hosts()[i].name, time.Since(t0).Round(time.Millisecond))
	return nil
}

// KillHost is the death of host i: SIGKILL of its QEMU and its agent, then
// its cables down.
func (c *Cluster) KillHost(i int) (time.Time, error) {
	me := c.hosts()[i]
	t := time.Now()
	errs := []error{killPidFile(me.cfg.PIDPath())}
	if a := c.agent(i); a != nil {
		errs = append(errs, a.Kill())
	}
	errs = append(errs, c.Rig.SetHostLinks(me.h, false))
	c.logf("%s killed (QEMU, agent, links)", me.name)
	return t, errors.Join(errs...)
}

// SwitchoverFrom runs `resilire switchover` on host i (its primary agent's
// loopback metrics address); it returns the command's run time. The agent
// then serves as the guest's standby by itself.
func (c *Cluster) SwitchoverFrom(ctx context.Context, i int) (time.Duration, error) {
	me := c.hosts()[i]
	t0 := time.Now()
	out, err := testenv.Run(ctx, me.h.Netns, c.Bin, "switchover", "--addr", "127.0.0.1:9470")
	took := time.Since(t0)
	if err != nil {
		return took, fmt.Errorf("switchover from %s: %w", me.name, err)
	}
	c.logf("%s: %s", me.name, strings.TrimSpace(string(out)))
	return took, nil
}

// KillHostB is KillHost(1).
func (c *Cluster) KillHostB() (time.Time, error) { return c.KillHost(1) }

// DeathsOptions shape Deaths.
type DeathsOptions struct {
	// N is the number of host deaths: host-a first, then whichever host
	// runs the guest, alternating (default 2).
	N         int
	FirstKill time.Duration // host-a dies this long after the client's start
	Return    time.Duration // a dead host comes back this long after its death
	// Protected is how long the guest runs protected again before the next
	// death; PhaseJitter, if set, adds a random amount to each.
	Protected   time.Duration
	PhaseJitter func() time.Duration
	After       time.Duration // the client goes on this long after the last death
	Think       time.Duration // client pause between requests (0 = 10 ms)
	BankConns   int           // bank clients on a Disk cluster (default 4)
	// IsolateFirst replaces host-a's first death by its isolation: its
	// agent crashes and its cables are pulled, but its QEMU runs on. With
	// Options.FenceKeepsQEMU the guest's stale copy is still there when
	// host-a returns.
	IsolateFirst bool
	// Switchover replaces every death by a planned switchover away from
	// the host (resilire switchover on it); its agent then serves as the
	// guest's standby by itself (Return is not used).
	Switchover bool
}

// Death is one host death (or switchover away from it).
type Death struct {
	Host string
	// Took is the switchover command's run time (request to handed over).
	Took time.Duration
	// At is the death since the client's first request; Active is death
	// to the survivor going live.
	At, Active time.Duration
	// Reprotected is when the dead host, back as a standby, first held a
	// checkpoint of the survivor (0 after the last death).
	Reprotected time.Duration
}

// Phase is the client's latency in one stretch between events.
type Phase struct {
	Name    string
	Summary kvload.Summary
}

// DeathsResult is what the client saw across the deaths.
type DeathsResult struct {
	Load    *kvload.Result
	Summary kvload.Summary
	Deaths  []Death
	Phases  []Phase
	Lost    []string
	// AckedAfterKill counts acknowledgements of requests sent after the
	// last death.
	AckedAfterKill int
	Bank           *BankResult
	Interval       time.Duration
	// Primary is host-a's protect agent's status just before the first
	// death (pause and bytes per epoch).
	Primary Status
	// ProtectRSS and StandbyRSS are the agents' peak resident memory
	// just before the first death (dom0 memory per protected VM, with the
	// guest RAM they map); ProtectAnon and StandbyAnon their anonymous
	// memory then (their own).
	ProtectRSS, StandbyRSS, ProtectAnon, StandbyAnon uint64
	GuestMiB                                         int
	// StalePid is host-a's QEMU found still running when host-a first
	// returned (0: none); StandbyPid the warm standby QEMU that replaced it.
	StalePid, StandbyPid int
	// FramesFromA count guest frames on the switch's port of host-a from
	// its first return until host-b's death or switchover away (must be
	// 0: host-a is a standby all along), and after.
	FramesFromA, FramesFromALive int
}

// Safe reports no acknowledged write lost, no inconsistent reply, a sound
// bank, and no guest frame from host-a between its return and its going live.
func (r *DeathsResult) Safe() bool {
	return len(r.Lost) == 0 && r.Load.Inconsistent == 0 && (r.Bank == nil || r.Bank.Safe()) && r.FramesFromA == 0
}

// Survived is Safe with the client's TCP connection kept and the guest
// answering after the last death.
func (r *DeathsResult) Survived() bool {
	return r.Safe() && r.Load.Reconnects == 0 && r.AckedAfterKill > 0
}

// Deaths runs the client across o.N host deaths on a Reprotect cluster:
// host-a dies and host-b goes live; host-a returns as a standby and host-b
// protects the guest again by itself; host-b dies and host-a goes live;
// and so on. The kv client keeps one TCP connection throughout.
func Deaths(ctx context.Context, c *Cluster, o DeathsOptions) (*DeathsResult, error) {
	if !c.Opts.Reprotect {
		return nil, errors.New("Deaths needs Options.Reprotect")
	}
	if o.N == 0 {
		o.N = 2
	}
	if o.Think == 0 {
		o.Think = 10 * time.Millisecond
	}
	if o.BankConns == 0 {
		o.BankConns = 4
	}
	if o.PhaseJitter == nil {
		o.PhaseJitter = func() time.Duration { return 0 }
	}
	hs := c.hosts()
	stop := make(chan struct{})
	lo := kvload.Options{Addr: c.GuestAddr(), Duration: 24 * time.Hour, Think: o.Think, Timeout: 10 * time.Second, Dial: c.Dial, Stop: stop}
	var (
		res     *kvload.Result
		loadErr error
		wg      sync.WaitGroup
	)
	var bk *bankRun
	if c.Opts.Disk {
		bk = c.startBank(ctx, o.BankConns, 0)
		defer bk.Stop()
	}
	wg.Add(1)
	go func() { defer wg.Done(); res, loadErr = kvload.Run(ctx, lo) }()
	defer func() { closeOnce(stop); wg.Wait() }()
	mac, err := net.ParseMAC(c.GuestMAC())
	if err != nil {
		return nil, err
	}
	r := &DeathsResult{Interval: c.Opts.Interval, GuestMiB: cmp.Or(c.CfgA.MemoryMiB, qemu.DefaultMemoryMiB)}
	var (
		kills, reprots []time.Time
		wa             *Watcher
		aLive          time.Time // host-a live again after its first return
	)
	defer func() {
		if wa != nil {
			wa.Stop()
		}
	}()
	if err := sleepCtx(ctx, o.FirstKill); err != nil {
		return nil, err
	}
	for k := range o.N {
		v, sv := k%2, 1-k%2 // victim, survivor
		if k > 0 {
			if err := sleepCtx(ctx, o.Protected+o.PhaseJitter()); err != nil {
				return nil, err
			}
		}
		var kill time.Time
		if k == 0 {
			if st, err := c.protect.Status(ctx); err == nil {
				r.Primary = st
			}
			r.ProtectRSS, r.StandbyRSS = c.protect.PeakRSS(), c.standby.PeakRSS()
			r.ProtectAnon, r.StandbyAnon = c.protect.AnonRSS(), c.standby.AnonRSS()
		}
		var took time.Duration
		switch {
		case o.Switchover:
			kill = time.Now()
			took, err = c.SwitchoverFrom(ctx, v)
		case k == 0 && o.IsolateFirst:
			kill = time.Now()
			err = errors.Join(c.protect.Kill(), c.Rig.SetHostLinks(c.Rig.A, false))
			c.logf("host-a isolated (agent crashed, cables pulled, QEMU left running)")
		default:
			kill, err = c.KillHost(v)
		}
		if err != nil {
			return nil, err
		}
		kills = append(kills, kill)
		if err := c.agent(sv).WaitStatus(ctx, 30*time.Second, wentLive); err != nil {
			return nil, fmt.Errorf("failover %d to %s: %w", k+1, hs[sv].name, err)
		}
		d := Death{Host: hs[v].name, Active: time.Since(kill), Took: took}
		if sv == 0 && wa != nil && aLive.IsZero() {
			// From the death (or switchover) of host-b, host-a may talk:
			// it goes live within milliseconds of it, before any poll sees it.
			aLive = kill
		}
		if k == o.N-1 {
			r.Deaths = append(r.Deaths, d)
			break
		}
		if !o.Switchover {
			if err := sleepCtx(ctx, o.Return-time.Since(kill)); err != nil {
				return nil, err
			}
		}
		if v == 0 && wa == nil {
			r.StalePid = qemu.RunningPid(c.CfgA)
			if wa, err = WatchSource(c.Rig.Switch, c.Rig.Prefix+"a-sw", mac); err != nil {
				return nil, err
			}
		}
		// After a switchover the old primary's agent serves as the
		// standby by itself; a dead host comes back with a fresh agent.
		if !o.Switchover {
			if err := c.ReturnHost(ctx, v); err != nil {
				return nil, err
			}
		}
		if err := c.WaitReprotected(ctx, v, 90*time.Second); err != nil {
			return nil, err
		}
		reprots = append(reprots, time.Now())
		if v == 0 && r.StandbyPid == 0 {
			r.StandbyPid = qemu.RunningPid(c.CfgA)
		}
		r.Deaths = append(r.Deaths, d)
	}
	last := kills[len(kills)-1]
	if err := sleepCtx(ctx, o.After-time.Since(last)); err != nil {
		return nil, err
	}
	closeOnce(stop)
	wg.Wait()
	if wa != nil {
		for _, at := range wa.Seen() {
			if aLive.IsZero() || at.Before(aLive) {
				r.FramesFromA++
			} else {
				r.FramesFromALive++
			}
		}
	}
	if loadErr != nil {
		return nil, fmt.Errorf("client: %w", loadErr)
	}
	if len(res.Samples) == 0 {
		return nil, errors.New("client: no requests")
	}
	r.Load, r.Summary = res, res.Summarize()
	t0 := res.Samples[0].Start
	for k := range r.Deaths {
		r.Deaths[k].At = kills[k].Sub(t0)
		if k < len(reprots) {
			r.Deaths[k].Reprotected = reprots[k].Sub(t0)
		}
	}
	r.Phases = phases(res, kills, reprots, hs)
	for _, x := range res.Samples {
		if x.OK && x.Start.After(last) {
			r.AckedAfterKill++
		}
	}
	if r.Lost, err = kvload.Verify(ctx, lo, res.Acked); err != nil {
		return nil, err
	}
	if bk != nil {
		sv := hs[1-(o.N-1)%2]
		if r.Bank, err = bk.finish(ctx, c, last, sv.cfg.PIDPath(), sv.img); err != nil {
			return nil, err
		}
	}
	return r, nil
}

// phases splits the samples at the deaths and re-protections.
func phases(res *kvload.Result, kills, reprots []time.Time, hs [2]host) []Phase {
	type seg struct {
		name     string
		from, to time.Time
	}
	far := time.Now().Add(24 * time.Hour)
	segs := []seg{{name: "host-a, protected", from: time.Time{}, to: kills[0]}}
	for k, kill := range kills {
		live := hs[1-k%2].name
		to := far
		if k < len(reprots) {
			to = reprots[k]
		}
		segs = append(segs, seg{name: live + ", unprotected", from: kill, to: to})
		if k < len(reprots) {
			next := far
			if k+1 < len(kills) {
				next = kills[k+1]
			}
			segs = append(segs, seg{name: live + ", protected again", from: reprots[k], to: next})
		}
	}
	out := make([]Phase, len(segs))
	for i, sg := range segs {
		var part kvload.Result
		for _, x := range res.Samples {
			if !x.Start.Before(sg.from) && x.Start.Add(x.Latency).Before(sg.to) {
				part.Samples = append(part.Samples, x)
			}
		}
		out[i] = Phase{Name: sg.name, Summary: part.Summarize()}
	}
	return out
}

// Marks are the deaths and re-protections for the timeline plot.
func (r *DeathsResult) Marks() []kvload.Mark {
	var m []kvload.Mark
	for _, d := range r.Deaths {
		label := d.Host + " killed"
		if d.Took > 0 {
			label = "switchover from " + d.Host
		}
		m = append(m, kvload.Mark{At: d.At, Label: label})
		if d.Reprotected > 0 {
			m = append(m, kvload.Mark{At: d.Reprotected, Label: "protected again"})
		}
	}
	return m
}

func closeOnce(ch chan struct{}) {
	select {
	case <-ch:
	default:
		close(ch)
	}
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(d):
		return nil
	}
}

// Print writes the report.
func (r *DeathsResult) Print(w io.Writer) {
	yes := map[bool]string{true: "yes", false: "NO"}
	ms := func(d time.Duration) time.Duration { return d.Round(time.Millisecond) }
	PrintEpochs(w, r.Primary.Stats, r.Interval, r.Bank != nil)
	fmt.Fprintf(w, "agents' peak RSS (VmHWM):        protect %.1f MiB, standby %.1f MiB (guest %d MiB; counts the guest RAM they map, shared, and the rings' double mapping)\n",
		float64(r.ProtectRSS)/(1<<20), float64(r.StandbyRSS)/(1<<20), r.GuestMiB)
	fmt.Fprintf(w, "agents' own memory (RssAnon):    protect %.1f MiB, standby %.1f MiB (what each costs dom0 beyond the guest)\n",
		float64(r.ProtectAnon)/(1<<20), float64(r.StandbyAnon)/(1<<20))
	for i, d := range r.Deaths {
		if d.Took > 0 {
			fmt.Fprintf(w, "switchover %d: away from %s at %v into the client run (command %v); the other host live %v after the request\n",
				i+1, d.Host, ms(d.At), ms(d.Took), ms(d.Active))
		} else {
			fmt.Fprintf(w, "death %d: %s killed at %v into the client run; the survivor live %v later\n", i+1, d.Host, ms(d.At), ms(d.Active))
		}
		if d.Reprotected > 0 {
			what := "death"
			if d.Took > 0 {
				what = "switchover"
			}
			fmt.Fprintf(w, "         %s back as a standby; guest protected again at %v (%v after the %s)\n", d.Host, ms(d.Reprotected), ms(d.Reprotected-d.At), what)
		}
	}
	if r.StalePid != 0 {
		fmt.Fprintf(w, "host-a's stale QEMU at its return: pid %d, destroyed (warm standby now pid %d)\n", r.StalePid, r.StandbyPid)
	}
	fmt.Fprintf(w, "guest frames from host-a:        %d from its return until host-b's end, %d after\n", r.FramesFromA, r.FramesFromALive)
	for _, p := range r.Phases {
		fmt.Fprintf(w, "latency %-28s p50/p99: %v / %v (%d requests)\n", p.Name+":", p.Summary.P50.Round(100*time.Microsecond),
			p.Summary.P99.Round(100*time.Microsecond), p.Summary.Requests)
	}
	s := r.Summary
	fmt.Fprintf(w, "client-observed downtime:        %v (longest gap between acknowledgements, all deaths)\n", ms(s.Outage))
	fmt.Fprintf(w, "requests / acknowledged:         %d / %d (%d acknowledged after the last death)\n", s.Requests, s.Acked, r.AckedAfterKill)
	fmt.Fprintf(w, "acknowledged writes lost:        %d\n", len(r.Lost))
	fmt.Fprintf(w, "TCP connection survived all:     %s (reconnects %d)\n", yes[r.Load.Reconnects == 0], r.Load.Reconnects)
	fmt.Fprintf(w, "rolled-back/inconsistent replies: %d\n", r.Load.Inconsistent)
	if b := r.Bank; b != nil {
		printBank(w, b)
	}
	fmt.Fprintf(w, "verdict:                         %s\n", map[bool]string{true: "SAFE", false: "VIOLATION"}[r.Safe()])
}
