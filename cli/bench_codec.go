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
		},
		Action: func(c *ucli.Context) error {
			fmt.Fprintf(c.App.Writer, "%s\n\n", baseline.MemoryNote(c.Int("block")))
			for _, dir := range c.StringSlice("trace") {
				if err := benchCodecTrace(c.App.Writer, dir, c.Int("block"), c.Int("workers")); err != nil {
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

// benchCodecTrace runs every codec over the trace in dir and prints a table.
func benchCodecTrace(w io.Writer, dir string, block, workers int) error {
	r, err := trace.Open(dir)
	if err != nil {
		return fmt.Errorf("open trace: %w", err)
	}
	defer r.Close()
	m := r.Meta()
	codecs, err := baseline.StandardCodecs(m.Pages, block, workers)
	if err != nil {
		return err
	}
	name := m.Name
	if name == "" {
		name = filepath.Base(dir)
	}
	rep, err := baseline.Run(fmt.Sprintf("%s (%s, %d ms epochs)", name, dir, m.IntervalMS), traceSource{r}, m.Pages, codecs)
	if err != nil {
		return err
	}
	if err := rep.Print(w); err != nil {
		return err
	}
	_, err = fmt.Fprintln(w)
	return err
}
