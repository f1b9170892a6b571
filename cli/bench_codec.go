// SPDX-License-Identifier: Apache-2.0

package cli

import (
	"fmt"
	"io"
	"path/filepath"
	"runtime"

	ucli "github.com/urfave/cli/v2"

	"github.com/resilire/resilire/checkpointer/fgbi/baseline"
	"github.com/resilire/resilire/testenv/trace"
)

// benchCodecCommand is `resilire bench codec --trace DIR`: every checkpoint
// codec over the same recorded trace, side by side.
func benchCodecCommand() *ucli.Command {
	return &ucli.Command{
		Name:  "codec",
		Usage: "compare FGBI with the Remus, Xen, XBZRLE and general-compressor encodings on dirty-memory traces",
		Flags: []ucli.Flag{
			&ucli.StringSliceFlag{Name: "trace", Usage: "trace directory (repeatable)", Required: true},
			&ucli.IntFlag{Name: "block", Value: 64, Usage: "FGBI block size, a power of two 64..4096"},
			&ucli.IntFlag{Name: "workers", Value: runtime.GOMAXPROCS(0), Usage: "goroutines for the parallel FGBI row"},
			&ucli.IntFlag{Name: "repeat", Value: 1, Usage: "runs per trace; times are the fastest run's"},
		},
		Action: func(c *ucli.Context) error {
			fmt.Fprintf(c.App.Writer, "%s\n\n", baseline.MemoryNote(c.Int("block")))
			for _, dir := range c.StringSlice("trace") {
				if err := benchCodecTrace(c.App.Writer, dir, c.Int("block"), c.Int("workers"), c.Int("repeat")); err != nil {
					return err
				}
			}
			return nil
		},
	}
}

// traceSource adapts a trace.Reader to baseline.Source.
type traceSource struct{ r *trace.Reader }

func (s traceSource) Next() ([]uint64, []byte, error) {
	e, err := s.r.Next()
	if err != nil {
		return nil, nil, err
	}
	return e.PFNs, e.Data, nil
}

// benchCodecTrace runs every codec over the trace in dir, repeat times, and
// prints one table.
func benchCodecTrace(w io.Writer, dir string, block, workers, repeat int) error {
	var best *baseline.Report
	for i := 0; i < max(repeat, 1); i++ {
		rep, err := benchCodecOnce(dir, block, workers)
		if err != nil {
			return err
		}
		if best == nil {
			best = rep
		} else if err := best.Best(rep); err != nil {
			return err
		}
	}
	if err := best.Print(w); err != nil {
		return err
	}
	_, err := fmt.Fprintln(w)
	return err
}

// benchCodecOnce is one run over the trace in dir.
func benchCodecOnce(dir string, block, workers int) (*baseline.Report, error) {
	r, err := trace.Open(dir)
	if err != nil {
		return nil, fmt.Errorf("open trace: %w", err)
	}
	defer r.Close()
	m := r.Meta()
	codecs, err := baseline.StandardCodecs(m.Pages, block, workers)
	if err != nil {
		return nil, err
	}
	name := m.Name
	if name == "" {
		name = filepath.Base(dir)
	}
	return baseline.Run(fmt.Sprintf("%s (%s, %d ms epochs)", name, dir, m.IntervalMS), traceSource{r}, m.Pages, codecs)
}
