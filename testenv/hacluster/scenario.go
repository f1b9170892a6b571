// SPDX-License-Identifier: Apache-2.0

package hacluster

import (
	"context"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/resilire/resilire/checkpointer"
	"github.com/resilire/resilire/testenv/guest/bank"
	"github.com/resilire/resilire/testenv/kvload"
)

// KillOptions shape KillDuring.
type KillOptions struct {
	KillAfter time.Duration // when host-a dies, after the client's start
	After     time.Duration // how long the client keeps going after the kill
	Think     time.Duration // client pause between requests (0 = 10 ms)
	KeyPrefix string
	// BankConns bank clients run beside the kv client on a Disk cluster
	// (default 4); BankEvery is each one's pause between transfers.
	BankConns int
	BankEvery time.Duration
}

// KillResult is what one host kill under load showed.
type KillResult struct {
	Load    *kvload.Result
	Summary kvload.Summary
	// KillAt is the kill relative to the client's first request.
	KillAt time.Duration
	// Lost are acknowledged writes missing after failover.
	Lost []string
	// Primary is the protect agent's last status before the kill.
	Primary Status
	// Activated is kill to the standby reporting "active" (0: never).
	Activated time.Duration
	// Interval is the checkpoint interval that was protecting the guest.
	Interval time.Duration
	// AckedAfterKill counts acknowledgements of requests sent after the
	// kill: zero means the guest never answered again.
	AckedAfterKill int
	// Protected summarises the requests sent before the kill (latency
	// under output commit).
	Protected kvload.Summary
	// Bank is the disk workload's outcome (Disk clusters only).
	Bank *BankResult
}

// Safe reports whether nothing the client was told survived wrongly: no
// acknowledged write lost, no rolled-back or inconsistent reply.
func (r *KillResult) Safe() bool {
	return len(r.Lost) == 0 && r.Load.Inconsistent == 0 && (r.Bank == nil || r.Bank.Safe())
}

// Survived reports a safe failover that kept the client's TCP connection
// and served it again after the kill.
func (r *KillResult) Survived() bool {
	return r.Safe() && r.Load.Reconnects == 0 && r.AckedAfterKill > 0
}

// KillDuring runs the kvload client from the client namespace on one TCP
// connection, kills host-a after o.KillAfter, keeps the client going for
// o.After, then reads back every acknowledged write on a fresh connection.
// On a Disk cluster the bank clients run too; after the kv check the bank
// is audited, the resumed guest stopped and the backup's image checked.
func KillDuring(ctx context.Context, c *Cluster, o KillOptions) (*KillResult, error) {
	if o.Think == 0 {
		o.Think = 10 * time.Millisecond
	}
	if o.BankConns == 0 {
		o.BankConns = 4
	}
	var bk *bankRun
	if c.Opts.Disk {
		bk = c.startBank(ctx, o.BankConns, o.BankEvery)
		defer bk.Stop()
	}
	lo := kvload.Options{Addr: c.GuestAddr(), Duration: o.KillAfter + o.After, Think: o.Think,
		Timeout: 5 * time.Second, Dial: c.Dial, KeyPrefix: o.KeyPrefix}
	var (
		res     *kvload.Result
		loadErr error
		wg      sync.WaitGroup
	)
	start := time.Now()
	wg.Add(1)
	go func() { defer wg.Done(); res, loadErr = kvload.Run(ctx, lo) }()
	r := &KillResult{Interval: c.Opts.Interval}
	// Keep the primary's freshest status until the kill.
	for time.Since(start) < o.KillAfter {
		if st, err := c.protect.Status(ctx); err == nil {
			r.Primary = st
		}
		select {
		case <-ctx.Done():
			wg.Wait()
			return nil, ctx.Err()
		case <-time.After(min(250*time.Millisecond, max(o.KillAfter-time.Since(start), 0))):
		}
	}
	killed, err := c.KillPrimaryHost()
	if err != nil {
		wg.Wait()
		return nil, err
	}
	if err := c.WaitFailover(ctx, 30*time.Second); err != nil {
		wg.Wait()
		return nil, fmt.Errorf("failover: %w", err)
	}
	r.Activated = time.Since(killed)
	wg.Wait()
	if loadErr != nil {
		return nil, fmt.Errorf("client: %w", loadErr)
	}
	if len(res.Samples) == 0 {
		return nil, fmt.Errorf("client: no requests")
	}
	r.Load, r.Summary = res, res.Summarize()
	r.KillAt = killed.Sub(res.Samples[0].Start)
	before := &kvload.Result{}
	for _, x := range res.Samples {
		if x.Start.Add(x.Latency).Before(killed) {
			before.Samples = append(before.Samples, x)
		}
	}
	r.Protected = before.Summarize()
	for _, x := range res.Samples {
		if x.OK && x.Start.After(killed) {
			r.AckedAfterKill++
		}
	}
	lost, err := kvload.Verify(ctx, lo, res.Acked)
	if err != nil {
		return nil, err
	}
	r.Lost = lost
	if bk != nil {
		if r.Bank, err = bk.finish(ctx, c, killed, c.CfgB.PIDPath(), c.ImgB); err != nil {
			return nil, err
		}
	}
	return r, nil
}

// Print writes the demo report.
func (r *KillResult) Print(w io.Writer) {
	s := r.Summary
	yes := map[bool]string{true: "yes", false: "NO"}
	PrintEpochs(w, r.Primary.Stats, r.Interval, r.Bank != nil)
	fmt.Fprintf(w, "host-a killed at:                %v into the client run\n", r.KillAt.Round(time.Millisecond))
	fmt.Fprintf(w, "standby active after:            %v\n", r.Activated.Round(time.Millisecond))
	fmt.Fprintf(w, "client-observed downtime:        %v (longest gap between acknowledgements)\n", s.Outage.Round(time.Millisecond))
	fmt.Fprintf(w, "requests / acknowledged:         %d / %d (%d acknowledged after the kill)\n", s.Requests, s.Acked, r.AckedAfterKill)
	fmt.Fprintf(w, "latency while protected p50/p99: %v / %v (replies wait for their epoch's ACK)\n",
		r.Protected.P50.Round(100*time.Microsecond), r.Protected.P99.Round(100*time.Microsecond))
	fmt.Fprintf(w, "acknowledged writes lost:        %d\n", len(r.Lost))
	fmt.Fprintf(w, "TCP connection survived:         %s (reconnects %d)\n", yes[r.Load.Reconnects == 0], r.Load.Reconnects)
	fmt.Fprintf(w, "rolled-back/inconsistent replies: %d\n", r.Load.Inconsistent)
	if b := r.Bank; b != nil {
		printBank(w, b)
	}
	fmt.Fprintf(w, "verdict:                         %s\n", map[bool]string{true: "SAFE", false: "VIOLATION"}[r.Safe()])
}

// lostTransfers counts acknowledged transfers the resumed guest does not
// have (all of them when it could not be audited).
func lostTransfers(b *BankResult) int {
	if b.Audit.Transfers == nil {
		return len(b.Load.Acked)
	}
	n := 0
	for _, id := range b.Load.Acked {
		if !b.Audit.Transfers[id] {
			n++
		}
	}
	return n
}

// printBank writes the bank's lines of a report.
func printBank(w io.Writer, b *BankResult) {
	fmt.Fprintf(w, "bank transfers acknowledged:     %d (%d after the kill; %d unresolved, %d refused for funds)\n",
		len(b.Load.Acked), b.AckedAfterKill, len(b.Load.Unresolved), b.Load.Refused)
	fmt.Fprintf(w, "bank balance total:              %d (want %d), %d transfers in the database, integrity %q\n",
		b.Audit.Sum, int64(bank.Accounts)*bank.InitialBalance, len(b.Audit.Transfers), b.Audit.Integrity)
	fmt.Fprintf(w, "acknowledged transfers lost:     %d\n", lostTransfers(b))
	img := "clean (e2fsck -fn after journal replay; database read from the image passes its checks)"
	if len(b.Image) > 0 {
		img = strings.Join(b.Image, "; ")
	}
	fmt.Fprintf(w, "survivor's disk image:           %s\n", img)
	for _, v := range b.Violations {
		fmt.Fprintf(w, "bank violation:                  %s\n", v)
	}
}

// PrintEpochs writes the protected epochs' lines of a report (make demo's,
// make xen-demo's).
func PrintEpochs(w io.Writer, st *checkpointer.EpochSummary, interval time.Duration, disk bool) {
	if st == nil {
		st = &checkpointer.EpochSummary{}
	}
	fmt.Fprintf(w, "epochs committed before the kill: %d (interval %v)\n", st.Committed, interval)
	fmt.Fprintf(w, "pause p50 / p99 / max:           %v / %v / %v (last %d epochs)\n",
		st.PauseP50.Round(10*time.Microsecond), st.PauseP99.Round(10*time.Microsecond), st.PauseMax.Round(10*time.Microsecond), st.Window)
	fmt.Fprintf(w, "bytes per epoch (mean):          %.0f on the wire, %.0f page-granular (%.1f dirty pages)\n",
		st.WireBytesMean, st.PageBytesMean, st.DirtyPagesMean)
	if disk {
		fmt.Fprintf(w, "disk bytes per epoch (mean):     %.0f written, %.0f on the wire\n", st.DiskBytesMean, st.DiskWireBytesMean)
	}
}
