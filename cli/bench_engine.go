// SPDX-License-Identifier: Apache-2.0

package cli

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"text/tabwriter"
	"time"

	"github.com/resilire/resilire/checkpointer/codec"
	"github.com/resilire/resilire/checkpointer/sim"

	"github.com/resilire/resilire/checkpointer"
	"github.com/resilire/resilire/checkpointer/trace"
	ucli "github.com/urfave/cli/v2"
)

func benchEngineCommand() *ucli.Command {
	return &ucli.Command{
		Name:  "engine",
		Usage: "epoch loop over loopback: pause p50/p99, checkpoint bytes/s, ack latency, CPU per epoch",
		Description: "Runs a primary and a backup in this process. The guest replays a recorded dirty-memory trace " +
			"(--trace, one trace epoch per checkpoint), or else a synthetic pattern, labelled as such. " +
			"A last row dirties 16 MiB per epoch to measure the pause against the 5 ms target.",
		Flags: []ucli.Flag{
			&ucli.StringFlag{Name: "trace", Usage: "trace directory (trace.rtr) to replay; empty or missing: synthetic"},
			&ucli.StringSliceFlag{Name: "interval", Value: ucli.NewStringSlice("25ms", "50ms", "100ms"), Usage: "checkpoint intervals"},
			&ucli.IntFlag{Name: "epochs", Value: 40, Usage: "measured epochs per row"},
			&ucli.Uint64Flag{Name: "mem-mib", Value: 64, Usage: "synthetic guest memory"},
			&ucli.IntFlag{Name: "dirty", Value: 1024, Usage: "synthetic dirty pages per epoch (random in a 16384-page working set)"},
			&ucli.BoolFlag{Name: "pipeline", Value: true, Usage: "overlap shipping of epoch e with epoch e+1"},
			codecFlags()[0], codecFlags()[1], codecFlags()[2],
		},
		Action: func(c *ucli.Context) error {
			codec, err := codecFrom(c)
			if err != nil {
				return err
			}
			rows, err := engineRows(c)
			if err != nil {
				return err
			}
			return runEngineBench(c, codec, rows)
		},
	}
}

// engineRow is one workload at one interval.
type engineRow struct {
	label    string
	interval time.Duration
	domain   func() (checkpointer.Domain, error)
}

func engineRows(c *ucli.Context) ([]engineRow, error) {
	label, domain, err := benchWorkload(c)
	if err != nil {
		return nil, err
	}
	var rows []engineRow
	for _, s := range c.StringSlice("interval") {
		d, err := time.ParseDuration(s)
		if err != nil {
			return nil, fmt.Errorf("--interval %q: %w", s, err)
		}
		rows = append(rows, engineRow{label, d, domain})
	}
	src := sim.SyntheticSource{Pages: 16384, Hot: 4096, Dirty: 4096, Seed: 1}
	rows = append(rows, engineRow{"synthetic: 16 MiB dirty/epoch", 50 * time.Millisecond, func() (checkpointer.Domain, error) {
		return sim.NewReplayDomain("bench", src.Pages, src.Open)
	}})
	return rows, nil
}

// benchWorkload picks the trace if there is one, else the synthetic pattern.
func benchWorkload(c *ucli.Context) (string, func() (checkpointer.Domain, error), error) {
	dir := c.String("trace")
	if dir != "" {
		if _, err := os.Stat(filepath.Join(dir, "trace.rtr")); err == nil {
			r, err := trace.Open(dir)
			if err != nil {
				return "", nil, err
			}
			m := r.Meta()
			r.Close()
			label := fmt.Sprintf("trace %s (%d MiB, recorded every %d ms)", m.Name, m.Pages*trace.PageSize>>20, m.IntervalMS)
			return label, func() (checkpointer.Domain, error) {
				return sim.NewReplayDomain("bench", m.Pages, func() (sim.EpochSource, error) { return openTraceSource(dir) })
			}, nil
		}
		fmt.Fprintf(c.App.ErrWriter, "no trace at %s: using the synthetic pattern\n", dir)
	}
	pages := c.Uint64("mem-mib") << 20 / checkpointer.PageSize
	src := sim.SyntheticSource{Pages: pages, Hot: min(16384, pages), Dirty: c.Int("dirty"), Seed: 1}
	label := fmt.Sprintf("SYNTHETIC (no trace): %d MiB, %d random pages/epoch", c.Uint64("mem-mib"), src.Dirty)
	return label, func() (checkpointer.Domain, error) { return sim.NewReplayDomain("bench", pages, src.Open) }, nil
}

// engineTraceSource adapts a trace reader; it closes the reader at the end.
type engineTraceSource struct{ r *trace.Reader }

func openTraceSource(dir string) (sim.EpochSource, error) {
	r, err := trace.Open(dir)
	if err != nil {
		return nil, err
	}
	return engineTraceSource{r}, nil
}

func (t engineTraceSource) Next() ([]uint64, []byte, error) {
	e, err := t.r.Next()
	if errors.Is(err, io.EOF) {
		t.r.Close()
	}
	if err != nil {
		return nil, nil, err
	}
	return e.PFNs, e.Data, nil
}

func runEngineBench(c *ucli.Context, codec codec.Codec, rows []engineRow) error {
	w := tabwriter.NewWriter(c.App.Writer, 2, 8, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(c.App.Writer, "codec %s, pipeline %v, %d measured epochs per row, loopback TCP, primary and backup in one process\n",
		codec.Name(), c.Bool("pipeline"), c.Int("epochs"))
	fmt.Fprintln(w, "workload\tinterval\tpause p50\tpause p99\treplay wait p50\tack p50\tack p99\tdirty MiB/ep\twire KiB/ep\twire MiB/s\tCPU/epoch\t")
	for _, r := range rows {
		dom, err := r.domain()
		if err != nil {
			return err
		}
		res, err := sim.RunBench(c.Context, sim.BenchConfig{Domain: dom, Codec: codec, Interval: r.interval, Epochs: c.Int("epochs"),
			Pipeline: c.Bool("pipeline")})
		dom.Close()
		if err != nil {
			return err
		}
		n := float64(max(res.Epochs, 1))
		fmt.Fprintf(w, "%s\t%v\t%s\t%s\t%s\t%s\t%s\t%.2f\t%.1f\t%.2f\t%s\t\n", r.label, r.interval,
			ms(sim.Percentile(res.Stopped, .5)), ms(sim.Percentile(res.Stopped, .99)), ms(sim.Percentile(res.Stops, .5)),
			ms(sim.Percentile(res.Acks, .5)), ms(sim.Percentile(res.Acks, .99)),
			float64(res.Pages)*checkpointer.PageSize/n/(1<<20), float64(res.WireBytes)/n/1024,
			float64(res.WireBytes)/res.Elapsed.Seconds()/(1<<20), ms(time.Duration(float64(res.CPU)/n)))
	}
	w.Flush()
	fmt.Fprintln(c.App.Writer, "pause = guest stopped (type II downtime): from Pause returning to Resume returning (Output.Advance, harvest, page copy, device state)\n"+
		"replay wait = time inside Pause waiting for the replayed guest to finish writing its epoch (a simulation artifact, not part of the pause)\n"+
		"CPU/epoch = whole process (primary + backup + replayed guest); target: pause <= 5 ms at 16 MiB dirty")
	return nil
}

func ms(d time.Duration) string { return fmt.Sprintf("%.2f ms", float64(d)/1e6) }
