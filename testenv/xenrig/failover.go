// SPDX-License-Identifier: Apache-2.0

package xenrig

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/resilire/resilire/checkpointer"
	"github.com/resilire/resilire/testenv/guest/bank"
	"github.com/resilire/resilire/testenv/hacluster"
	"github.com/resilire/resilire/testenv/kvload"
)

// Fault is how the primary is lost.
type Fault string

// The faults of the rig's scenarios.
const (
	HostKill   Fault = "host-kill"   // kill -9 of the primary host's QEMU: power loss
	AgentCrash Fault = "agent-crash" // kill -9 of the primary's agent; host and guest live on
	Partition  Fault = "partition"   // the replication link cut; both hosts live on
)

// defaultInterval is the rig's checkpoint interval: TCG inside TCG.
const defaultInterval = 200 * time.Millisecond

// FailoverOptions shape one protected run ended by a fault.
type FailoverOptions struct {
	Fault    Fault         // default HostKill
	Interval time.Duration // checkpoint interval (default 200ms: TCG)
	Before   time.Duration // client load while protected, before the kill (default 20s)
	// UnsafeNoOutputCommit releases the guest's output at once: the
	// negative control, whose failover must lose acknowledged writes.
	UnsafeNoOutputCommit bool
	// UnsafeNoDiskReplication (a rig with a disk) serves the disk on both
	// hosts but never replicates it: the disk's negative control, whose
	// failover must break the bank's invariants.
	UnsafeNoDiskReplication bool
}

func (o FailoverOptions) withDefaults() FailoverOptions {
	if o.Fault == "" {
		o.Fault = HostKill
	}
	if o.Interval == 0 {
		o.Interval = defaultInterval
	}
	if o.Before == 0 {
		o.Before = 20 * time.Second
	}
	return o
}

// FailoverResult is what the client and the agents saw.
type FailoverResult struct {
	Load      *kvload.Result
	Lost      []string              // acknowledged keys missing or changed after the failover
	Primary   Status                // the primary's status just before the kill
	Bank      *hacluster.BankResult // the database workload's (a rig with a disk)
	HostRSS   []uint64              // each host's QEMU peak RSS just before the fault
	AgentMem  []string              // each dom0's resilire agents' memory just before the fault (AgentMemory)
	Fault     Fault
	Interval  time.Duration
	Killed    time.Duration // the fault, from the client's start
	Live      time.Duration // fault -> the kv service answers a new connection from the backup
	Skipped   int           // epochs the primary skipped: the guest did not suspend in time
	PrimaryLg string        // the primary agent's log tail
	StandbyLg string        // the standby agent's log tail
}

// Protect starts the standby on host b and the primary on host a (whose
// guest runs), with the eBPF output commit on the guest's vif, and waits
// until the guest is protected.
func (r *Rig) Protect(ctx context.Context, a, b int, opts FailoverOptions) error {
	opts = opts.withDefaults()
	pa, pb := r.Hosts[a], r.Hosts[b]
	// With a disk, both agents serve it; protect creates the guest
	// (paused, its vif held, then unpaused) once the export is up.
	disk, attach, start := "", fmt.Sprintf("resilire dataplane attach --vm %s --port %s && ", GuestName, GuestVif), ""
	if r.Disk {
		disk, attach, start = " --disk-image "+DiskImage+" --disk-socket "+DiskSocket, "", " --start-vm"
		if opts.UnsafeNoDiskReplication {
			disk += " --unsafe-no-disk-replication"
		}
	}
	// The fence device is the test (Fence): the standby's fence command
	// waits until the test has made sure the old primary's guest cannot
	// run any more. A real deployment fences through IPMI or its PDU.
	if _, err := pb.Run(ctx, 30*time.Second, fmt.Sprintf(
		"rm -f /share/fenced; setsid resilire standby --vm %s --domain xen --listen %s:7788 --heartbeat-timeout 3s "+
			"--fence-cmd 'while [ ! -e /share/fenced ]; do sleep 0.2; done' --fence-timeout 5m%s "+
			"</dev/null >/var/log/resilire.log 2>&1 &", GuestName, ReplIP(b), disk)); err != nil {
		return err
	}
	unsafe := ""
	if opts.UnsafeNoOutputCommit {
		unsafe = " --unsafe-no-output-commit"
	}
	if _, err := pa.Run(ctx, time.Minute, fmt.Sprintf(
		"%ssetsid resilire protect --vm %s --domain xen --dataplane "+
			"--backup %s:7788 --interval %v --heartbeat-timeout 3s --xen-suspend-timeout 5s --max-skipped-epochs 10 --no-progress%s%s%s </dev/null >/var/log/resilire.log 2>&1 &",
		attach, GuestName, ReplIP(b), opts.Interval, start, disk, unsafe)); err != nil {
		return err
	}
	// With a disk, protect first waits for the guest it created to boot,
	// and the initial copy holds the disk too.
	limit := 3 * time.Minute
	if r.Disk {
		limit = 6 * time.Minute
	}
	deadline := time.Now().Add(limit)
	for {
		st, err := AgentStatus(ctx, pa)
		if err == nil && st.State == "protected" && st.Epoch > 2 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not protected after %v (status %+v, %v): %s", limit, st, err, AgentLog(ctx, pa))
		}
		time.Sleep(2 * time.Second)
	}
}

// Status is the part of an agent's /status the rig reads.
type Status struct {
	Role  string                     `json:"role"`
	State string                     `json:"state"`
	Epoch uint64                     `json:"epoch"`
	Stats *checkpointer.EpochSummary `json:"stats"`
}

// AgentStatus reads the agent's /status on host h.
func AgentStatus(ctx context.Context, h *Host) (Status, error) {
	var st Status
	out, err := h.Run(ctx, 20*time.Second, "busybox wget -q -O - http://127.0.0.1:9470/status")
	if err != nil {
		return st, err
	}
	if err := json.Unmarshal([]byte(strings.TrimSpace(out)), &st); err != nil {
		return st, fmt.Errorf("status %q: %w", out, err)
	}
	return st, nil
}

// AgentMemory is the memory of the resilire agents in host h's dom0, from
// /proc/PID/status: VmRSS, RssAnon (the agent's own), RssFile, RssShmem.
func AgentMemory(ctx context.Context, h *Host) string {
	out, err := h.Run(ctx, 20*time.Second, `for p in $(busybox pidof resilire); do `+
		`echo "pid $p: $(grep -E '^(VmRSS|RssAnon|RssFile|RssShmem)' /proc/$p/status | tr -s ' \t\n' ' ')"; done`)
	if err != nil {
		return err.Error()
	}
	return strings.TrimSpace(out)
}

// AgentLog is the tail of the agent's log on host h.
func AgentLog(ctx context.Context, h *Host) string {
	out, err := h.Run(ctx, 20*time.Second, "tail -n 25 /var/log/resilire.log")
	if err != nil {
		return err.Error()
	}
	return out
}

// Fence answers host b's standby when it fences host a: once b reports
// "fencing", the old primary's guest is destroyed if host a still runs,
// then the fence command is released. It returns when it has fenced or
// ctx ends.
func (r *Rig) Fence(ctx context.Context, a, b int) error {
	for {
		st, err := AgentStatus(ctx, r.Hosts[b])
		if err == nil && st.State == "fencing" {
			break
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
	}
	if r.Hosts[a].Alive() {
		if _, err := r.Hosts[a].Run(ctx, time.Minute, "xl destroy "+GuestName); err != nil {
			return fmt.Errorf("fence: %w", err)
		}
	}
	return os.WriteFile(filepath.Join(r.Hosts[b].Share, "fenced"), nil, 0o644)
}

// inject makes the fault on host a.
func (r *Rig) inject(ctx context.Context, a int, f Fault) error {
	switch f {
	case HostKill:
		r.Hosts[a].Kill()
		return nil
	case AgentCrash:
		_, err := r.Hosts[a].Run(ctx, 30*time.Second, "pkill -9 -f 'resilire protect'")
		return err
	case Partition:
		return r.NS.Do(func() error {
			tap, err := netlink.LinkByName(fmt.Sprintf("xen%drep", a+1))
			if err != nil {
				return err
			}
			return netlink.LinkSetDown(tap)
		})
	}
	return fmt.Errorf("unknown fault %q", f)
}

// Failover protects the guest running on host a toward host b, runs the
// kv client against it, injects the fault under load, fences host a when
// host b asks, and waits until the guest serves from host b; then it
// checks every acknowledged write.
func (r *Rig) Failover(ctx context.Context, a, b int, opts FailoverOptions) (*FailoverResult, error) {
	opts = opts.withDefaults()
	if err := r.Protect(ctx, a, b, opts); err != nil {
		return nil, err
	}
	res := &FailoverResult{Fault: opts.Fault, Interval: opts.Interval}
	var bankLoad *bankRun
	if r.Disk {
		// protect created the guest: wait for its services, then load
		// its database too.
		if err := r.WaitGuest(ctx, 3*time.Minute); err != nil {
			return res, fmt.Errorf("the guest protect created: %w; primary: %s", err, AgentLog(ctx, r.Hosts[a]))
		}
		if err := r.waitBank(ctx, 3*time.Minute); err != nil {
			return res, err
		}
		bankLoad = r.startBank(ctx)
		defer bankLoad.Stop()
	}
	stop := make(chan struct{})
	// The client waits up to 3 minutes for a reply: under nested TCG a
	// failover takes tens of seconds and TCP's retransmission backoff
	// roughly doubles the gap; what is tested is whether the connection
	// survives, not the client's patience.
	lopts := kvload.Options{Addr: GuestAddr(), Duration: 10 * time.Minute, Think: 20 * time.Millisecond,
		Timeout: 3 * time.Minute, Dial: r.Dial, KeyPrefix: "x", Stop: stop}
	type out struct {
		res *kvload.Result
		err error
	}
	loaded := make(chan out, 1)
	start := time.Now()
	go func() { lr, err := kvload.Run(ctx, lopts); loaded <- out{lr, err} }()
	stopLoad := func() out { close(stop); return <-loaded }
	time.Sleep(opts.Before)
	if bankLoad != nil {
		// Under nested TCG a transfer (a SQLite commit, fsync through NBD
		// in a dom0 busy checkpointing) can take tens of seconds: the fault
		// waits for a few acknowledged ones, which it must not lose.
		if err := bankLoad.waitAcked(ctx, minBankAcked, 4*time.Minute); err != nil {
			stopLoad()
			return res, err
		}
	}
	// The kill must find the guest protected: a primary agent that stopped
	// on its own would make this a different failover.
	st, err := AgentStatus(ctx, r.Hosts[a])
	res.PrimaryLg = AgentLog(ctx, r.Hosts[a])
	if err != nil || st.State != "protected" {
		stopLoad()
		return res, fmt.Errorf("before the kill the primary is not protecting (status %+v, %v)", st, err)
	}
	res.Primary = st
	if n, err := r.Hosts[a].Run(ctx, 20*time.Second, "grep -c 'epoch skipped' /var/log/resilire.log || true"); err == nil {
		res.Skipped, _ = strconv.Atoi(strings.TrimSpace(n))
	}
	for _, h := range r.Hosts {
		res.HostRSS = append(res.HostRSS, h.PeakRSS())
		res.AgentMem = append(res.AgentMem, AgentMemory(ctx, h))
	}
	fctx, stopFence := context.WithCancel(ctx)
	defer stopFence()
	fenced := make(chan error, 1)
	go func() { fenced <- r.Fence(fctx, a, b) }()
	if err := r.inject(ctx, a, opts.Fault); err != nil {
		stopLoad()
		return res, fmt.Errorf("%s: %w", opts.Fault, err)
	}
	res.Killed = time.Since(start)
	if err := r.WaitGuest(ctx, 4*time.Minute); err != nil {
		stopLoad()
		return res, fmt.Errorf("after the kill: %w; standby: %s", err, AgentLog(ctx, r.Hosts[b]))
	}
	res.Live = time.Since(start) - res.Killed
	if err := <-fenced; err != nil {
		stopLoad()
		return res, err
	}
	time.Sleep(10 * time.Second) // the client runs on the survivor
	o := stopLoad()
	res.StandbyLg = AgentLog(ctx, r.Hosts[b])
	if o.err != nil {
		return res, fmt.Errorf("client: %w", o.err)
	}
	res.Load = o.res
	lost, err := kvload.Verify(ctx, lopts, o.res.Acked)
	res.Lost = lost
	if err == nil && bankLoad != nil {
		// Last: it ends the guest, to check the disk it leaves.
		res.Bank, err = bankLoad.finish(ctx, r, b, start.Add(res.Killed))
	}
	return res, err
}

// Print writes the run's report in the form of `make demo`'s.
func (res *FailoverResult) Print(w io.Writer) {
	hacluster.PrintEpochs(w, res.Primary.Stats, res.Interval, false)
	fmt.Fprintf(w, "epochs skipped (slow suspend):   %d\n", res.Skipped)
	if res.Load == nil {
		return
	}
	s := res.Load.Summarize()
	yes := map[bool]string{true: "yes", false: "NO"}
	fmt.Fprintf(w, "xen1 %-27s %v into the client run\n", string(res.Fault)+" at:", res.Killed.Round(time.Millisecond))
	fmt.Fprintf(w, "guest answered from xen2 after:  %v (a new connection's first reply)\n", res.Live.Round(time.Millisecond))
	fmt.Fprintf(w, "client-observed downtime:        %v (longest gap between acknowledgements)\n", s.Outage.Round(time.Millisecond))
	fmt.Fprintf(w, "requests / acknowledged:         %d / %d\n", s.Requests, s.Acked)
	fmt.Fprintf(w, "latency p50/p99:                 %v / %v (replies wait for their epoch's ACK)\n", s.P50, s.P99)
	fmt.Fprintf(w, "acknowledged writes lost:        %d\n", len(res.Lost))
	fmt.Fprintf(w, "TCP connection survived:         %s (reconnects %d)\n", yes[res.Load.Reconnects == 0], res.Load.Reconnects)
	fmt.Fprintf(w, "rolled-back/inconsistent replies: %d\n", res.Load.Inconsistent)
	safe := len(res.Lost) == 0 && res.Load.Inconsistent == 0 && res.Load.Reconnects == 0
	if b := res.Bank; b != nil {
		fmt.Fprintf(w, "disk: bank transfers acked:      %d (%d before the fault; %d unresolved, %d refused)\n",
			len(b.Load.Acked), len(b.Load.Acked)-b.AckedAfterKill, len(b.Load.Unresolved), b.Load.Refused)
		if lat := slices.Sorted(slices.Values(b.Load.Latencies)); len(lat) > 0 {
			fmt.Fprintf(w, "disk: transfer latency p50/max:  %v / %v (SQLite commit with fsync through NBD, reply held for its epoch)\n",
				lat[len(lat)/2].Round(time.Millisecond), lat[len(lat)-1].Round(time.Millisecond))
		}
		fmt.Fprintf(w, "disk: audit on xen2:             %d transfers, sum %d, integrity %q\n", len(b.Audit.Transfers), b.Audit.Sum, b.Audit.Integrity)
		fmt.Fprintf(w, "disk: violations (live, image):  %d, %d\n", len(b.Violations), len(b.Image))
		for _, v := range append(b.Violations, b.Image...) {
			fmt.Fprintf(w, "  - %s\n", v)
		}
		safe = safe && b.Safe()
	}
	fmt.Fprintf(w, "verdict:                         %s\n", map[bool]string{true: "SAFE", false: "VIOLATION"}[safe])
}

// BankAddr is the guest's bank service.
func BankAddr() string { return net.JoinHostPort(GuestIP, strconv.Itoa(bank.Port)) }

// waitBank waits until the guest's bank answers an audit.
func (r *Rig) waitBank(ctx context.Context, limit time.Duration) error {
	return poll(ctx, limit, 2*time.Second, "the guest's bank not up", func() error {
		_, err := r.audit(ctx, 20*time.Second)
		return err
	})
}

// audit audits the guest's bank, waiting at most limit.
func (r *Rig) audit(ctx context.Context, limit time.Duration) (bank.Audit, error) {
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	return bank.AuditAt(ctx, r.Dial, BankAddr())
}

// minBankAcked is how many bank transfers are acknowledged before the fault.
const minBankAcked = 3

// bankRun is the bank load running from the client's place.
type bankRun struct{ *bank.Background }

// waitAcked waits until n transfers are acknowledged.
func (b *bankRun) waitAcked(ctx context.Context, n int64, limit time.Duration) error {
	return poll(ctx, limit, time.Second, "bank load", func() error {
		if got := b.Acked(); got < n {
			return fmt.Errorf("%d of %d transfers acknowledged", got, n)
		}
		return nil
	})
}

// startBank starts two bank clients against the guest. They wait up to 3
// minutes for a reply, as the kv client does.
func (r *Rig) startBank(ctx context.Context) *bankRun {
	return &bankRun{bank.Start(ctx, bank.LoadOptions{Dial: r.Dial, Addr: BankAddr(), Conns: 2, Every: 50 * time.Millisecond,
		Timeout: 3 * time.Minute})}
}

// finish stops the load, audits the guest now running on host hb, then
// destroys it and checks host hb's disk image on this host
// (hacluster.CheckBackupImage): the guest's page cache can hide a wrong
// disk from the live audit, not from this.
func (b *bankRun) finish(ctx context.Context, r *Rig, hb int, fault time.Time) (*hacluster.BankResult, error) {
	res, err := hacluster.LiveBankResult(b.Stop(), fault, func() (bank.Audit, error) { return r.audit(ctx, time.Minute) })
	if err != nil {
		return nil, err
	}
	// The guest's end, as a crash: what is on the disk is what a reboot
	// would find.
	h := r.Hosts[hb]
	if _, err := h.Run(ctx, 2*time.Minute, "xl destroy "+GuestName+" && cp "+DiskImage+" /share/backup.img"); err != nil {
		return res, fmt.Errorf("copy the backup's disk image: %w", err)
	}
	img := filepath.Join(h.Share, "backup.img")
	defer os.Remove(img)
	if res.Image, err = hacluster.CheckBackupImage(ctx, img, r.Dir, res.Load); err != nil {
		return res, err
	}
	return res, nil
}
