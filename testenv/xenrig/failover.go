// SPDX-License-Identifier: Apache-2.0

package xenrig

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/resilire/resilire/checkpointer"
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
	Lost      []string // acknowledged keys missing or changed after the failover
	Primary   Status   // the primary's status just before the kill
	HostRSS   []uint64 // each host's QEMU peak RSS just before the fault
	AgentMem  []string // each dom0's resilire agents' memory just before the fault (AgentMemory)
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
	// The fence device is the test (Fence): the standby's fence command
	// waits until the test has made sure the old primary's guest cannot
	// run any more. A real deployment fences through IPMI or its PDU.
	if _, err := pb.Run(ctx, 30*time.Second, fmt.Sprintf(
		"rm -f /share/fenced; setsid resilire standby --vm %s --domain xen --listen %s:7788 --heartbeat-timeout 3s "+
			"--fence-cmd 'while [ ! -e /share/fenced ]; do sleep 0.2; done' --fence-timeout 5m "+
			"</dev/null >/var/log/resilire.log 2>&1 &", GuestName, ReplIP(b))); err != nil {
		return err
	}
	unsafe := ""
	if opts.UnsafeNoOutputCommit {
		unsafe = " --unsafe-no-output-commit"
	}
	if _, err := pa.Run(ctx, time.Minute, fmt.Sprintf(
		"resilire dataplane attach --vm %s --port %s && setsid resilire protect --vm %s --domain xen --dataplane "+
			"--backup %s:7788 --interval %v --heartbeat-timeout 3s --xen-suspend-timeout 5s --max-skipped-epochs 10 --no-progress%s </dev/null >/var/log/resilire.log 2>&1 &",
		GuestName, GuestVif, GuestName, ReplIP(b), opts.Interval, unsafe)); err != nil {
		return err
	}
	deadline := time.Now().Add(3 * time.Minute)
	for {
		st, err := AgentStatus(ctx, pa)
		if err == nil && st.State == "protected" && st.Epoch > 2 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not protected after 3m (status %+v, %v): %s", st, err, AgentLog(ctx, pa))
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
	fmt.Fprintf(w, "verdict:                         %s\n", map[bool]string{true: "SAFE", false: "VIOLATION"}[safe])
}
