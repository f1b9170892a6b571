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
	rows := flag.String("rows", "all", "classic (intervals and codecs), dirty (dirty tracking: hash vs uffd-wp, 128 MiB vs 1 GiB, 50 vs 10 ms) or all")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, 20*time.Minute)
	defer cancel()
	b := bench{bin: *bin, prefix: *prefix, phase: *phase, dirty: *dirty, rows: *rows}
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
	rows        string
	log         io.Writer
}

// config is one row's setup; zero fields are the cluster's defaults
// (128 MiB, dirty tracking auto).
type config struct {
	iv       time.Duration
	codec    string
	memMiB   int
	tracking string
	failover bool // kill the primary at the end (one row)
}

func (cf config) name() string {
	if cf.iv == 0 {
		return "unprotected"
	}
	n := fmt.Sprintf("%v %s", cf.iv, cf.codec)
	if cf.memMiB > 0 {
		n += fmt.Sprintf(" %dM", cf.memMiB)
	}
	if cf.tracking != "" {
		n += " " + cf.tracking
	}
	return n
}

// configs are the rows of -rows, the unprotected baseline first.
func configs(set string) ([]config, error) {
	classic := []config{{25 * time.Millisecond, "fgbi", 0, "", false}, {50 * time.Millisecond, "fgbi", 0, "", true},
		{100 * time.Millisecond, "fgbi", 0, "", false}, {50 * time.Millisecond, "raw", 0, "", false}}
	// Same workload, RAM and tracker varied: pause should not grow with
	// RAM under uffd-wp. 4 GiB would need 2 x 4 GiB of /dev/shm (primary
	// and replica) and more: over the rig's 8 GiB budget.
	var dirty []config
	for _, mem := range []int{128, 1024} {
		for _, tr := range []string{"hash", "uffd-wp"} {
			dirty = append(dirty, config{50 * time.Millisecond, "fgbi", mem, tr, false})
		}
	}
	dirty = append(dirty, config{10 * time.Millisecond, "fgbi", 128, "hash", false}, config{10 * time.Millisecond, "fgbi", 128, "uffd-wp", false},
		config{10 * time.Millisecond, "fgbi", 1024, "uffd-wp", false})
	base := []config{{}}
	switch set {
	case "classic":
		return append(base, classic...), nil
	case "dirty":
		return append(base, dirty...), nil
	case "all":
		return append(append(base, classic...), dirty...), nil
	}
	return nil, fmt.Errorf("-rows %q: want classic, dirty or all", set)
}

// row is one configuration's results.
type row struct {
	name       string
	mech       string // dirty tracking the agent reported
	reqPerSec  float64
	pagesPerS  float64
	stats      *checkpointer.EpochSummary
	failover   *hacluster.KillResult
	reqLatency time.Duration
}

func (b *bench) run(ctx context.Context, w io.Writer) error {
	cfs, err := configs(b.rows)
	if err != nil {
		return err
	}
	var rows []row
	for _, cf := range cfs {
		r, err := b.one(ctx, cf)
		if err != nil {
			return fmt.Errorf("%s: %w", cf.name(), err)
		}
		rows = append(rows, r)
	}
	print(w, rows, b.dirty)
	printRatios(w, rows)
	return nil
}

// one measures a configuration (interval 0: unprotected) on a fresh cluster.
func (b *bench) one(ctx context.Context, cf config) (row, error) {
	interval := cf.iv
	r := row{name: cf.name(), mech: "-"}
	o := hacluster.Options{Prefix: b.prefix, Binary: b.bin, Log: b.log, Unprotected: interval == 0, Interval: interval, Codec: cf.codec,
		MemoryMiB: cf.memMiB}
	if cf.tracking != "" {
		o.ProtectFlags = []string{"--dirty-tracking", cf.tracking}
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
		if st.DirtyTracking != nil {
			r.mech = st.DirtyTracking.Mechanism
		}
	}
	// 2. Guest CPU throughput: pages its dirtier manages per second.
	if r.pagesPerS, err = b.cpuPhase(ctx, c); err != nil {
		return r, err
	}
	// 3. Failover time with the warm standby (at 50 ms only: one kill).
	if cf.failover {
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
	fmt.Fprintln(tw, "config\ttracker\treq/s (1 conn)\tvs unprot.\treq p50\tguest pages/s\tvs unprot.\tpause p50\tpause p99\twire B/epoch\tpage-granular B/epoch\tratio\t")
	for _, r := range rows {
		pause50, pause99, wire, page, ratio := "-", "-", "-", "-", "-"
		if st := r.stats; st != nil {
			pause50, pause99 = st.PauseP50.Round(10*time.Microsecond).String(), st.PauseP99.Round(10*time.Microsecond).String()
			wire, page = fmt.Sprintf("%.0f", st.WireBytesMean), fmt.Sprintf("%.0f", st.PageBytesMean)
			if st.WireBytesMean > 0 {
				ratio = fmt.Sprintf("%.1fx", st.PageBytesMean/st.WireBytesMean)
			}
		}
		fmt.Fprintf(tw, "%s\t%s\t%.0f\t%s\t%v\t%.0f\t%s\t%s\t%s\t%s\t%s\t%s\t\n", r.name, r.mech, r.reqPerSec, pct(r.reqPerSec, base.reqPerSec),
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

// printRatios puts the dirty-tracking rows side by side: pause p50 at
// 1 GiB over 128 MiB per tracker (1.0x = independent of RAM), and hash
// over uffd-wp per size and interval.
func printRatios(w io.Writer, rows []row) {
	p50 := map[string]time.Duration{}
	for _, r := range rows {
		if r.stats != nil {
			p50[r.name] = r.stats.PauseP50
		}
	}
	ratio := func(a, b string) string {
		x, y := p50[a], p50[b]
		if x == 0 || y == 0 {
			return "-"
		}
		return fmt.Sprintf("%.2fx (%v / %v)", float64(x)/float64(y), x.Round(10*time.Microsecond), y.Round(10*time.Microsecond))
	}
	if _, ok := p50["50ms fgbi 128M hash"]; !ok {
		return
	}
	fmt.Fprintln(w, "\npause p50 ratios (same workload):")
	for _, tr := range []string{"hash", "uffd-wp"} {
		fmt.Fprintf(w, "  %-8s 1024M / 128M at 50ms: %s\n", tr, ratio("50ms fgbi 1024M "+tr, "50ms fgbi 128M "+tr))
	}
	for _, k := range []string{"50ms fgbi 128M", "50ms fgbi 1024M", "10ms fgbi 128M"} {
		fmt.Fprintf(w, "  hash / uffd-wp, %-16s %s\n", k+":", ratio(k+" hash", k+" uffd-wp"))
	}
	fmt.Fprintln(w, "guest pages/s vs unprot. is the worst-case dirtier's lost work (baseline: the unprotected 128 MiB guest;\n"+
		"  the dirtier's rate does not depend on RAM size under TCG).")
}
