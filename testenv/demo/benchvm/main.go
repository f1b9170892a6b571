// SPDX-License-Identifier: Apache-2.0

// Command benchvm is `make bench-vm`: the real guest unprotected and
// protected at 25, 50 and 100 ms epochs, side by side: client throughput
// on one connection, guest CPU throughput, pause, bytes per epoch (FGBI on
// the wire vs page-granular), and the failover time with the warm standby.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/resilire/resilire/checkpointer"
	"github.com/resilire/resilire/testenv/guest/kv"
	"github.com/resilire/resilire/testenv/hacluster"
	"github.com/resilire/resilire/testenv/kvload"
)

func main() {
	bin := flag.String("bin", "", "resilire binary (empty: build one)")
	prefix := flag.String("prefix", "bvm", "namespace and file prefix")
	phase := flag.Duration("phase", 5*time.Second, "length of each measurement")
	dirty := flag.Int("dirty", kv.DirtyBufferPages, "pages per 10 ms tick asked of the guest's dirtier in the CPU phase (its maximum)")
	verbose := flag.Bool("v", false, "progress lines")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, 8*time.Minute)
	defer cancel()
	b := bench{bin: *bin, prefix: *prefix, phase: *phase, dirty: *dirty}
	if *verbose {
		b.log = os.Stderr
	}
	if err := b.run(ctx, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "bench-vm:", err)
		os.Exit(1)
	}
}

type bench struct {
	bin, prefix string
	phase       time.Duration
	dirty       int
	log         io.Writer
}

// row is one configuration's results.
type row struct {
	name       string
	reqPerSec  float64
	pagesPerS  float64
	stats      *checkpointer.EpochSummary
	failover   *hacluster.KillResult
	reqLatency time.Duration
}

func (b *bench) run(ctx context.Context, w io.Writer) error {
	var rows []row
	for _, cf := range []struct {
		iv    time.Duration
		codec string
	}{{0, ""}, {25 * time.Millisecond, "fgbi"}, {50 * time.Millisecond, "fgbi"}, {100 * time.Millisecond, "fgbi"}, {50 * time.Millisecond, "raw"}} {
		r, err := b.one(ctx, cf.iv, cf.codec)
		if err != nil {
			return fmt.Errorf("interval %v codec %s: %w", cf.iv, cf.codec, err)
		}
		rows = append(rows, r)
	}
	print(w, rows, b.dirty)
	return nil
}

// one measures a configuration (interval 0: unprotected) on a fresh cluster.
func (b *bench) one(ctx context.Context, interval time.Duration, codec string) (row, error) {
	r := row{name: "unprotected"}
	o := hacluster.Options{Prefix: b.prefix, Binary: b.bin, Log: b.log, Unprotected: interval == 0, Interval: interval, Codec: codec}
	if interval > 0 {
		r.name = fmt.Sprintf("%v %s", interval, codec)
	}
	c, err := hacluster.Setup(ctx, o)
	if err != nil {
		return r, err
	}
	defer c.Close()
	// 1. Client throughput: SETs back to back on one connection.
	res, err := kvload.Run(ctx, kvload.Options{Addr: c.GuestAddr(), Duration: b.phase, Think: time.Nanosecond, Dial: c.Dial})
	if err != nil {
		return r, err
	}
	s := res.Summarize()
	r.reqPerSec, r.reqLatency = float64(s.Acked)/b.phase.Seconds(), s.P50
	if interval > 0 {
		st, err := c.Protect().Status(ctx)
		if err != nil {
			return r, err
		}
		r.stats = st.Stats
	}
	// 2. Guest CPU throughput: pages its dirtier manages per second.
	if r.pagesPerS, err = b.cpuPhase(ctx, c); err != nil {
		return r, err
	}
	// 3. Failover time with the warm standby (at 50 ms only: one kill).
	if interval == 50*time.Millisecond && codec == "fgbi" {
		kr, err := hacluster.KillDuring(ctx, c, hacluster.KillOptions{KillAfter: 2 * time.Second, After: 3 * time.Second})
		if err != nil {
			return r, err
		}
		r.failover = kr
	}
	return r, nil
}

// cpuPhase asks the guest to dirty more pages than it can and measures
// how many it managed per second (its STATS "dirtied" counter).
func (b *bench) cpuPhase(ctx context.Context, c *hacluster.Cluster) (float64, error) {
	conn, err := c.Dial(ctx, "tcp", c.GuestAddr())
	if err != nil {
		return 0, err
	}
	cl := kv.NewClient(conn)
	defer cl.Close()
	cl.Timeout = 10 * time.Second
	if err := cl.Dirty(b.dirty); err != nil {
		return 0, err
	}
	s0, err := cl.Stats()
	if err != nil {
		return 0, err
	}
	t0 := time.Now()
	time.Sleep(b.phase)
	s1, err := cl.Stats()
	if err != nil {
		return 0, err
	}
	d := time.Since(t0)
	if err := cl.Dirty(0); err != nil {
		return 0, err
	}
	return float64(s1.Dirtied-s0.Dirtied) / d.Seconds(), nil
}

func print(w io.Writer, rows []row, dirty int) {
	base := rows[0]
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "config\treq/s (1 conn)\tvs unprot.\treq p50\tguest pages/s\tvs unprot.\tpause p50\tpause p99\twire B/epoch\tpage-granular B/epoch\tratio\t")
	for _, r := range rows {
		pause50, pause99, wire, page, ratio := "-", "-", "-", "-", "-"
		if st := r.stats; st != nil {
			pause50, pause99 = st.PauseP50.Round(10*time.Microsecond).String(), st.PauseP99.Round(10*time.Microsecond).String()
			wire, page = fmt.Sprintf("%.0f", st.WireBytesMean), fmt.Sprintf("%.0f", st.PageBytesMean)
			if st.WireBytesMean > 0 {
				ratio = fmt.Sprintf("%.1fx", st.PageBytesMean/st.WireBytesMean)
			}
		}
		fmt.Fprintf(tw, "%s\t%.0f\t%s\t%v\t%.0f\t%s\t%s\t%s\t%s\t%s\t%s\t\n", r.name, r.reqPerSec, pct(r.reqPerSec, base.reqPerSec),
			r.reqLatency.Round(10*time.Microsecond), r.pagesPerS, pct(r.pagesPerS, base.pagesPerS), pause50, pause99, wire, page, ratio)
	}
	tw.Flush()
	for _, r := range rows {
		if f := r.failover; f != nil {
			fmt.Fprintf(w, "\nfailover (%s, warm standby, heartbeat timeout 500ms): standby active %v after the kill; "+
				"client-observed downtime %v; acked writes lost %d; connection survived %v\n",
				r.name, f.Activated.Round(time.Millisecond), f.Summary.Outage.Round(time.Millisecond), len(f.Lost), f.Load.Reconnects == 0)
		}
	}
	fmt.Fprintln(w, "\nreq/s: kvload SETs back to back on one TCP connection (each reply waits for its epoch's ACK when protected).")
	fmt.Fprintf(w, "guest pages/s: the guest's dirtier asked for %d pages per 10 ms (8-byte store per page, 32 MiB cycled;\n"+
		"  the cap is %d/s): what the vCPU achieves, so the pauses and TCG re-translation after each one show up as lost work.\n",
		dirty, dirty*100)
	fmt.Fprintln(w, "wire vs page-granular: mean checkpoint bytes per epoch during the req/s phase (codec output incl. device state);\n"+
		"  page-granular = dirty pages x 4096 (RAM only); the raw row is a real page-granular codec on the wire: whole pages\n"+
		"  plus the whole device-state blob every epoch (FGBI sends the blob as a delta against the previous one).")
}

// pct is the overhead of v against base, as "-x.x%".
func pct(v, base float64) string {
	if base == 0 {
		return "-"
	}
	return fmt.Sprintf("%+.1f%%", (v-base)/base*100)
}
