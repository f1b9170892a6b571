// SPDX-License-Identifier: Apache-2.0

package hacluster

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"path/filepath"
	"sync"
	"time"

	"github.com/resilire/resilire/checkpointer/qemu"
	"github.com/resilire/resilire/testenv/kvload"
)

// ReturnHostA brings host-a back after its death: its cables are plugged in
// again and it runs a fresh standby agent (--discard-stale-guest destroys
// a QEMU of the guest still running there; its port stays blocked). The
// agent takes host-b as its peer: it fences host-b and goes live if host-b
// dies, and then protects the guest toward host-b again.
func (c *Cluster) ReturnHostA(ctx context.Context) error {
	if err := c.Rig.SetHostLinks(c.Rig.A, true); err != nil {
		return err
	}
	hb := c.Opts.HeartbeatTimeout
	args := []string{"standby", "--vm", c.VM, "--listen", netip.AddrPortFrom(c.Rig.A.RepAddr, 7470).String(),
		"--fence-cmd", c.fenceB, "--fence-timeout", "10s", "--peer", "host-b",
		"--heartbeat-interval", (hb / 5).String(), "--heartbeat-timeout", hb.String(), "--codec", c.Opts.Codec,
		"--domain", "qemu", "--qemu-config", filepath.Join(c.RunDir, "a.json"), "--discard-stale-guest",
		"--dataplane", "--pin-root", c.PinA, "--metrics-addr", "127.0.0.1:9470",
		"--reprotect-to", netip.AddrPortFrom(c.Rig.B.RepAddr, 7470).String(), "--interval", c.Opts.Interval.String()}
	if c.Opts.InputReplay {
		args = append(args, "--input-replay")
	}
	if c.Opts.Disk {
		args = append(args, "--disk-image", c.ImgA, "--disk-socket", c.CfgA.DiskSocket)
	}
	a, err := startAgent(c.Rig.A.Netns, c.Bin, filepath.Join(c.RunDir, "standby-a.log"), args)
	if err != nil {
		return err
	}
	c.returned = a
	c.logf("host-a back: standby agent started")
	return a.WaitStatus(ctx, 30*time.Second, func(s Status) bool { return s.State != "" })
}

// WaitReprotected waits until host-a's standby holds a consistent
// checkpoint from host-b: the guest is protected again.
func (c *Cluster) WaitReprotected(ctx context.Context, limit time.Duration) error {
	if c.returned == nil {
		return errors.New("host-a has not returned")
	}
	t0 := time.Now()
	if err := c.returned.WaitStatus(ctx, limit, func(s Status) bool { return s.State == "standby" && s.Epoch > 0 }); err != nil {
		return fmt.Errorf("re-protection: %w", err)
	}
	c.logf("protected again by host-b (standby on host-a) after %v", time.Since(t0).Round(time.Millisecond))
	return nil
}

// KillHostB is the death of host-b once it runs the guest: SIGKILL of its
// QEMU (the activated standby) and its agent, then its cables down.
func (c *Cluster) KillHostB() (time.Time, error) {
	t := time.Now()
	errs := []error{killPidFile(c.CfgB.PIDPath())}
	if c.standby != nil {
		errs = append(errs, c.standby.Kill())
	}
	errs = append(errs, c.Rig.SetHostLinks(c.Rig.B, false))
	c.logf("host-b killed (QEMU, agent, links)")
	return t, errors.Join(errs...)
}

// TwoDeathOptions shape TwoDeaths.
type TwoDeathOptions struct {
	FirstKill time.Duration // host-a dies this long after the client's start
	Return    time.Duration // host-a comes back this long after its death
	Protected time.Duration // host-b runs protected this long before it dies
	After     time.Duration // the client goes on this long after host-b's death
	Think     time.Duration // client pause between requests (0 = 10 ms)
	BankConns int           // bank clients on a Disk cluster (default 4)
	// IsolateFirst replaces host-a's first death by its isolation: its
	// agent crashes and its cables are pulled, but its QEMU runs on. With
	// Options.FenceKeepsQEMU the guest's stale copy is still there when
	// host-a returns; the result then says whether a guest frame ever
	// left host-a before host-a went live.
	IsolateFirst bool
}

// TwoDeathResult is what the client saw across both deaths.
type TwoDeathResult struct {
	Load    *kvload.Result
	Summary kvload.Summary
	// Kill1 and Kill2 are the deaths of host-a and host-b, Reprotected
	// when host-a's standby first held host-b's checkpoint; all since the
	// client's first request.
	Kill1, Reprotected, Kill2 time.Duration
	// Active1 and Active2 are each death to the survivor going live.
	Active1, Active2 time.Duration
	// Phases summarise the latency of requests answered in each phase:
	// protected by host-b as backup, unprotected on host-b, protected by
	// host-a as backup, and unprotected on host-a.
	Phases         [4]kvload.Summary
	Lost           []string
	AckedAfterKill int // acknowledgements of requests sent after the second death
	Bank           *BankResult
	Interval       time.Duration
	// StalePid is host-a's QEMU found still running when host-a returned
	// (0: none); StandbyPid the warm standby QEMU that replaced it.
	StalePid, StandbyPid int
	// FramesFromA count guest frames on the switch's port of host-a from
	// its return until it went live (must be 0), and after.
	FramesFromA, FramesFromALive int
}

// Safe reports no acknowledged write lost, no inconsistent reply, a sound
// bank, and no guest frame from host-a between its return and its going live.
func (r *TwoDeathResult) Safe() bool {
	return len(r.Lost) == 0 && r.Load.Inconsistent == 0 && (r.Bank == nil || r.Bank.Safe()) && r.FramesFromA == 0
}

// Survived is Safe with the client's TCP connection kept and the guest
// answering after the second death.
func (r *TwoDeathResult) Survived() bool {
	return r.Safe() && r.Load.Reconnects == 0 && r.AckedAfterKill > 0
}

// TwoDeaths runs the client across two host deaths on a Reprotect
// cluster: host-a dies, host-b goes live; host-a returns as a standby and
// host-b protects the guest again; host-b dies, host-a goes live.
func TwoDeaths(ctx context.Context, c *Cluster, o TwoDeathOptions) (*TwoDeathResult, error) {
	if !c.Opts.Reprotect {
		return nil, errors.New("TwoDeaths needs Options.Reprotect")
	}
	if o.Think == 0 {
		o.Think = 10 * time.Millisecond
	}
	if o.BankConns == 0 {
		o.BankConns = 4
	}
	stop := make(chan struct{})
	lo := kvload.Options{Addr: c.GuestAddr(), Duration: 10 * time.Minute, Think: o.Think, Timeout: 10 * time.Second, Dial: c.Dial, Stop: stop}
	var (
		res     *kvload.Result
		loadErr error
		wg      sync.WaitGroup
	)
	var bk *bankRun
	if c.Opts.Disk {
		bk = c.startBank(ctx, o.BankConns, 0)
		defer bk.cancel()
	}
	wg.Add(1)
	go func() { defer wg.Done(); res, loadErr = kvload.Run(ctx, lo) }()
	defer func() { closeOnce(stop); wg.Wait() }()
	r := &TwoDeathResult{Interval: c.Opts.Interval}
	if err := sleepCtx(ctx, o.FirstKill); err != nil {
		return nil, err
	}
	var kill1 time.Time
	var err error
	if o.IsolateFirst {
		kill1 = time.Now()
		err = errors.Join(c.protect.Kill(), c.Rig.SetHostLinks(c.Rig.A, false))
		c.logf("host-a isolated (agent crashed, cables pulled, QEMU left running)")
	} else {
		kill1, err = c.KillPrimaryHost()
	}
	if err != nil {
		return nil, err
	}
	if err := c.WaitFailover(ctx, 30*time.Second); err != nil {
		return nil, fmt.Errorf("first failover: %w", err)
	}
	r.Active1 = time.Since(kill1)
	if err := sleepCtx(ctx, o.Return-time.Since(kill1)); err != nil {
		return nil, err
	}
	r.StalePid = qemu.RunningPid(c.CfgA)
	mac, err := net.ParseMAC(c.GuestMAC())
	if err != nil {
		return nil, err
	}
	wa, err := WatchSource(c.Rig.Switch, c.Rig.Prefix+"a-sw", mac)
	if err != nil {
		return nil, err
	}
	defer wa.Stop()
	if err := c.ReturnHostA(ctx); err != nil {
		return nil, err
	}
	if err := c.WaitReprotected(ctx, 90*time.Second); err != nil {
		return nil, err
	}
	reprotected := time.Now()
	r.StandbyPid = qemu.RunningPid(c.CfgA)
	if err := sleepCtx(ctx, o.Protected); err != nil {
		return nil, err
	}
	kill2, err := c.KillHostB()
	if err != nil {
		return nil, err
	}
	if err := c.returned.WaitStatus(ctx, 30*time.Second, wentLive); err != nil {
		return nil, fmt.Errorf("second failover: %w", err)
	}
	r.Active2 = time.Since(kill2)
	live := time.Now()
	if err := sleepCtx(ctx, o.After-time.Since(kill2)); err != nil {
		return nil, err
	}
	closeOnce(stop)
	wg.Wait()
	for _, at := range wa.Seen() {
		if at.Before(live) {
			r.FramesFromA++
		} else {
			r.FramesFromALive++
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
	r.Kill1, r.Reprotected, r.Kill2 = kill1.Sub(t0), reprotected.Sub(t0), kill2.Sub(t0)
	var phases [4]kvload.Result
	for _, x := range res.Samples {
		end := x.Start.Add(x.Latency)
		switch {
		case end.Before(kill1):
			phases[0].Samples = append(phases[0].Samples, x)
		case x.Start.After(kill1) && end.Before(reprotected):
			phases[1].Samples = append(phases[1].Samples, x)
		case x.Start.After(reprotected) && end.Before(kill2):
			phases[2].Samples = append(phases[2].Samples, x)
		case x.Start.After(kill2):
			phases[3].Samples = append(phases[3].Samples, x)
		}
		if x.OK && x.Start.After(kill2) {
			r.AckedAfterKill++
		}
	}
	for i := range phases {
		r.Phases[i] = phases[i].Summarize()
	}
	if r.Lost, err = kvload.Verify(ctx, lo, res.Acked); err != nil {
		return nil, err
	}
	if bk != nil {
		if r.Bank, err = bk.finish(ctx, c, kill2, c.CfgA.PIDPath(), c.ImgA); err != nil {
			return nil, err
		}
	}
	return r, nil
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

// Print writes the two-death report.
func (r *TwoDeathResult) Print(w io.Writer) {
	yes := map[bool]string{true: "yes", false: "NO"}
	ms := func(d time.Duration) time.Duration { return d.Round(time.Millisecond) }
	fmt.Fprintf(w, "host-a killed at:                %v into the client run; host-b active %v later\n", ms(r.Kill1), ms(r.Active1))
	fmt.Fprintf(w, "host-a back, guest protected again at: %v (%v after the first death)\n", ms(r.Reprotected), ms(r.Reprotected-r.Kill1))
	if r.StalePid != 0 {
		fmt.Fprintf(w, "host-a's stale QEMU at its return: pid %d, destroyed (warm standby now pid %d)\n", r.StalePid, r.StandbyPid)
	}
	fmt.Fprintf(w, "guest frames from host-a:        %d from its return until it went live, %d after\n", r.FramesFromA, r.FramesFromALive)
	fmt.Fprintf(w, "host-b killed at:                %v; host-a active %v later\n", ms(r.Kill2), ms(r.Active2))
	names := [4]string{"protected (backup host-b)", "unprotected on host-b", "protected (backup host-a)", "unprotected on host-a"}
	for i, s := range r.Phases {
		fmt.Fprintf(w, "latency %-26s p50/p99: %v / %v (%d requests)\n", names[i]+":", s.P50.Round(100*time.Microsecond), s.P99.Round(100*time.Microsecond), s.Requests)
	}
	s := r.Summary
	fmt.Fprintf(w, "client-observed downtime:        %v (longest gap between acknowledgements, both deaths)\n", ms(s.Outage))
	fmt.Fprintf(w, "requests / acknowledged:         %d / %d (%d acknowledged after the second death)\n", s.Requests, s.Acked, r.AckedAfterKill)
	fmt.Fprintf(w, "acknowledged writes lost:        %d\n", len(r.Lost))
	fmt.Fprintf(w, "TCP connection survived both:    %s (reconnects %d)\n", yes[r.Load.Reconnects == 0], r.Load.Reconnects)
	fmt.Fprintf(w, "rolled-back/inconsistent replies: %d\n", r.Load.Inconsistent)
	if b := r.Bank; b != nil {
		printBank(w, b)
	}
	fmt.Fprintf(w, "verdict:                         %s\n", map[bool]string{true: "SAFE", false: "VIOLATION"}[r.Safe()])
}
