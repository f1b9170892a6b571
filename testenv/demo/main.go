// SPDX-License-Identifier: Apache-2.0

// Command demo is `make demo`: a real VM survives the death of its host,
// twice. It protects the test guest on host-a with the resilire agents
// (warm standby on host-b) and its ext4 disk (served by protect, replicated
// with every checkpoint), runs a key-value client on one TCP connection
// and bank clients against the guest's SQLite database, and kills host-a
// at a random moment. Host-b takes over and, once host-a is back as a
// standby, protects the guest again by itself; then host-b dies and host-a
// takes over. The demo reports what the clients saw, what the surviving
// guest's database holds and whether the survivor's disk image is sound,
// with both deaths on one latency timeline.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/resilire/resilire/testenv/hacluster"
)

func main() {
	o := options{}
	flag.StringVar(&o.prefix, "prefix", "demo", "namespace and file prefix")
	flag.StringVar(&o.bin, "bin", "", "resilire binary (empty: build one)")
	flag.StringVar(&o.out, "out", "out", "directory for demo-timeline.png")
	flag.DurationVar(&o.interval, "interval", 50*time.Millisecond, "checkpoint interval")
	flag.DurationVar(&o.heartbeat, "heartbeat-timeout", 0, "standby's heartbeat timeout before fencing (0: the cluster default, 500ms)")
	flag.DurationVar(&o.after, "after", 6*time.Second, "how long the client keeps going after the (last) kill")
	flag.IntVar(&o.deaths, "deaths", 2, "host deaths: 1 kills host-a once; 2 or more alternate the hosts, each coming back as a standby and the survivor protecting the guest again")
	flag.BoolVar(&o.unsafe, "unsafe-no-output-commit", false, "run protect without output commit (shows the violation)")
	flag.BoolVar(&o.inputReplay, "input-replay", true, "ship the guest's input log to the backup and replay it after the failover (LLM); -input-replay=false to compare")
	flag.BoolVar(&o.disk, "disk", true, "give the guest its replicated disk and the bank workload; -disk=false for the memory-only guest")
	flag.BoolVar(&o.unsafeDisk, "unsafe-no-disk-replication", false, "serve the disk but do not replicate it (shows the violation)")
	flag.BoolVar(&o.verbose, "v", false, "progress lines")
	flag.StringVar(&o.runDir, "run-dir", "", "keep configs, agent logs and sockets here (default: a temporary directory, removed)")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ok, err := run(ctx, o, os.Stdout)
	if err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		os.Exit(2)
	}
	if !ok {
		os.Exit(1)
	}
}

type options struct {
	prefix, bin, out             string
	runDir                       string
	interval, after, heartbeat   time.Duration
	unsafe, verbose, inputReplay bool
	disk, unsafeDisk             bool
	deaths                       int
}

// run sets up the cluster, runs the client across the kill and reports.
// ok is false when an acknowledged write was lost, a reply rolled back,
// the connection broke or the guest never answered after the kill.
func run(ctx context.Context, o options, w io.Writer) (ok bool, err error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute+time.Duration(max(o.deaths, 1))*time.Minute)
	defer cancel()
	var progress io.Writer
	if o.verbose {
		progress = os.Stderr
	}
	t0 := time.Now()
	if o.deaths < 1 {
		return false, fmt.Errorf("-deaths %d: want 1 or more", o.deaths)
	}
	c, err := hacluster.Setup(ctx, hacluster.Options{Prefix: o.prefix, Interval: o.interval, Binary: o.bin, RunDir: o.runDir,
		UnsafeNoOutputCommit: o.unsafe, InputReplay: o.inputReplay, HeartbeatTimeout: o.heartbeat, Log: progress,
		Disk: o.disk, UnsafeNoDiskReplication: o.unsafeDisk, Reprotect: o.deaths > 1})
	if err != nil {
		return false, err
	}
	defer c.Close()
	fmt.Fprintf(w, "setup: guest booted and protected in %v\n", time.Since(t0).Round(100*time.Millisecond))
	if err := os.MkdirAll(o.out, 0o755); err != nil {
		return false, err
	}
	png := filepath.Join(o.out, "demo-timeline.png")
	if o.deaths > 1 {
		r, err := hacluster.Deaths(ctx, c, hacluster.DeathsOptions{N: o.deaths, FirstKill: 4*time.Second + rand.N(4*time.Second),
			Return: 2 * time.Second, Protected: 2 * time.Second, PhaseJitter: func() time.Duration { return rand.N(2 * time.Second) }, After: o.after})
		if err != nil {
			c.DumpLogs(os.Stderr)
			return false, err
		}
		r.Print(w)
		title := fmt.Sprintf("kvload across %d host deaths, re-protected after each (one TCP connection)", o.deaths)
		if err := r.Load.PlotMarks(png, title, r.Marks()...); err != nil {
			return false, err
		}
		fmt.Fprintf(w, "timeline:                        %s\n", png)
		if !r.Survived() {
			c.DumpLogs(os.Stderr)
		}
		return r.Survived(), nil
	}
	r, err := hacluster.KillDuring(ctx, c, hacluster.KillOptions{
		KillAfter: 4*time.Second + rand.N(4*time.Second), After: o.after, Think: 10 * time.Millisecond})
	if err != nil {
		c.DumpLogs(os.Stderr)
		return false, err
	}
	r.Print(w)
	if err := r.Load.Plot(png, "kvload across the death of host-a (one TCP connection)", r.KillAt); err != nil {
		return false, err
	}
	fmt.Fprintf(w, "timeline:                        %s\n", png)
	if !r.Survived() {
		c.DumpLogs(os.Stderr)
	}
	return r.Survived(), nil
}
