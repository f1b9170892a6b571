// SPDX-License-Identifier: Apache-2.0

package main

import (
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"

	"github.com/resilire/resilire/checkpointer/fgbi/baseline"
	"github.com/resilire/resilire/checkpointer/trace"
)

// Command benchcodec compares the FGBI codec with the Remus, Xen, XBZRLE
// and general-compressor encodings on dirty-memory traces (make
// bench-codec). It is a measurement tool, not part of the shipped binary:
// the baseline codecs it runs live in checkpointer/fgbi/baseline.
//
//	go run ./testenv/benchcodec --trace DIR [--trace DIR...] [--block 64] [--workers N] [--repeat N]
func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// traceList is a repeatable --trace flag.
type traceList []string

func (t *traceList) String() string     { return strings.Join(*t, ",") }
func (t *traceList) Set(v string) error { *t = append(*t, v); return nil }

// run parses args and benchmarks every trace; it returns the exit status.
func run(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("benchcodec", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var traces traceList
	fs.Var(&traces, "trace", "trace directory (repeatable, required)")
	block := fs.Int("block", 64, "FGBI block size, a power of two 64..4096")
	workers := fs.Int("workers", runtime.GOMAXPROCS(0), "goroutines for the parallel FGBI row")
	repeat := fs.Int("repeat", 1, "runs per trace; times are the fastest run's")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if len(traces) == 0 {
		fmt.Fprintln(stderr, "benchcodec: at least one --trace DIR is required")
		return 2
	}
	fmt.Fprintf(stdout, "%s\n\n", baseline.MemoryNote(*block))
	for _, dir := range traces {
		if err := benchCodecTrace(stdout, dir, *block, *workers, *repeat); err != nil {
			fmt.Fprintf(stderr, "benchcodec: %v\n", err)
			return 1
		}
	}
	return 0
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
